//! The Dispatcher actor: takes verified webhooks from the ingest handlers and de-duplicates
//! and persists each in its source's Redis stream in one atomic step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::audit::{AuditWriter, NewEventBatch, NewEventRecord};
use crate::queue::{enqueue_batch, EnqueueItem, EnqueueOutcome, RedisPool, ENQUEUE_BATCH_LUA};
use crate::source::Source;

// Ingest names the event it hands over by this path.
pub use crate::event::NewEvent;

/// Asks the Dispatcher to de-duplicate and enqueue an event.
#[derive(Message)]
#[rtype(result = "Result<Enqueued, DispatchError>")]
pub struct Enqueue {
    pub source: Arc<Source>,
    pub event: NewEvent,
}

/// The outcome of an [`Enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// New: appended to the stream.
    Queued { id: String, stream_id: String },
    /// Seen before: the id the first one was given.
    Duplicate { id: String },
}

/// Why an event could not be enqueued (the sender gets a 503 and retries).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    #[error("no Redis connection: {0}")]
    Connection(String),
    #[error("Redis command failed: {0}")]
    Redis(String),
    #[error("the dispatcher stopped")]
    Stopped,
}

/// Audit rows handed to the AuditWriter at most this often (or sooner when a batch fills).
const AUDIT_HANDOFF: Duration = Duration::from_millis(20);
const AUDIT_BATCH: usize = 256;
/// One Redis call carries at most this many events, or this many bytes of them.
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 4 << 20;

/// A webhook waiting for its source's next batch.
struct Waiting {
    event: NewEvent,
    reply: oneshot::Sender<Result<Enqueued, DispatchError>>,
}

/// The webhooks of one source that arrived while its last batch was in Redis.
struct SourceQueue {
    source: Arc<Source>,
    waiting: Vec<Waiting>,
    in_flight: bool,
}

/// Routes verified webhooks into Redis; one runs on each HTTP worker thread, so handing a
/// webhook over never crosses threads. Group commit: while a source's batch is in Redis,
/// the webhooks that arrive for it wait and go together in the next call (no timer: an idle
/// source's webhook goes at once). Audit rows are collected here and handed to the
/// AuditWriter in batches: one cross-thread wake-up per batch, not per webhook.
pub struct Dispatcher {
    redis: RedisPool,
    script: Arc<redis::Script>,
    audit: Addr<AuditWriter>,
    pending_audit: Vec<NewEventRecord>,
    queues: HashMap<String, SourceQueue>,
}

impl Dispatcher {
    /// A dispatcher writing to `redis` and recording accepted events with `audit`.
    pub fn new(redis: RedisPool, audit: Addr<AuditWriter>) -> Self {
        Dispatcher {
            redis,
            script: Arc::new(redis::Script::new(ENQUEUE_BATCH_LUA)),
            audit,
            pending_audit: Vec::new(),
            queues: HashMap::new(),
        }
    }

    fn hand_off_audit(&mut self) {
        if !self.pending_audit.is_empty() {
            let batch = std::mem::take(&mut self.pending_audit);
            self.audit.do_send(NewEventBatch(batch));
        }
    }

    /// Sends what waits for `name` as one batch, unless a batch of it is in Redis already.
    fn flush(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Some(queue) = self.queues.get_mut(name) else {
            return;
        };
        if queue.in_flight || queue.waiting.is_empty() {
            return;
        }
        let (mut count, mut bytes) = (0, 0);
        for w in &queue.waiting {
            if count == MAX_BATCH || (count > 0 && bytes + w.event.body.len() > MAX_BATCH_BYTES) {
                break;
            }
            count += 1;
            bytes += w.event.body.len();
        }
        let batch: Vec<Waiting> = queue.waiting.drain(..count).collect();
        queue.in_flight = true;
        let source = queue.source.clone();
        let pool = self.redis.clone();
        let script = self.script.clone();
        let name = name.to_string();
        let work = async move {
            let outcomes = enqueue(&pool, &script, &source, &batch).await;
            (batch, outcomes, source)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(batch, outcomes, source), act, ctx| {
                    act.settle(&source, batch, outcomes);
                    if let Some(queue) = act.queues.get_mut(&name) {
                        queue.in_flight = false;
                    }
                    act.flush(&name, ctx);
                }),
        );
    }

    /// Answers each webhook of a finished batch and keeps the audit rows of the new ones.
    fn settle(
        &mut self,
        source: &Arc<Source>,
        batch: Vec<Waiting>,
        outcomes: Result<Vec<EnqueueOutcome>, DispatchError>,
    ) {
        let mut woken = false;
        for (i, Waiting { event, reply }) in batch.into_iter().enumerate() {
            let id = event.id.to_string();
            let answer = match outcomes.as_ref().map(|o| &o[i]) {
                Err(e) => Err(e.clone()),
                Ok(EnqueueOutcome::Queued { stream_id }) => {
                    self.pending_audit.push(NewEventRecord::new(
                        &source.config.name,
                        source.config.destinations.len(),
                        event,
                        stream_id.clone(),
                    ));
                    woken = true;
                    Ok(Enqueued::Queued {
                        id,
                        stream_id: stream_id.clone(),
                    })
                }
                // Our own first try: it ran, but its connection broke before the answer came
                // back and the pool ran it again. It is queued; its audit row comes from the
                // stream (the backfill before a trim), as the stream id is not known here.
                Ok(EnqueueOutcome::Seen { first_id }) if *first_id == id => {
                    woken = true;
                    Ok(Enqueued::Queued {
                        id,
                        stream_id: String::new(),
                    })
                }
                Ok(EnqueueOutcome::Seen { first_id }) => Ok(Enqueued::Duplicate {
                    id: first_id.clone(),
                }),
                Ok(EnqueueOutcome::Failed { error }) => Err(DispatchError::Redis(error.clone())),
            };
            // The sender may have given up (timeout); nothing to answer then.
            let _ = reply.send(answer);
        }
        if woken {
            source.wake();
        }
        if self.pending_audit.len() >= AUDIT_BATCH {
            self.hand_off_audit();
        }
    }
}

/// One script call for the whole batch.
async fn enqueue(
    pool: &RedisPool,
    script: &redis::Script,
    source: &Source,
    batch: &[Waiting],
) -> Result<Vec<EnqueueOutcome>, DispatchError> {
    let ids: Vec<String> = batch.iter().map(|w| w.event.id.to_string()).collect();
    let headers: Vec<String> = batch.iter().map(|w| w.event.headers.to_string()).collect();
    let items: Vec<EnqueueItem<'_>> = batch
        .iter()
        .zip(&ids)
        .zip(&headers)
        .map(|((w, id), headers)| EnqueueItem {
            id,
            key: &w.event.key,
            dedup_key: source.keys.dedup(&w.event.key),
            event_type: w.event.event_type.as_deref().unwrap_or(""),
            received_at_ms: w.event.received_at_ms,
            content_type: w.event.content_type.as_deref().unwrap_or(""),
            headers,
            body: w.event.body.as_ref(),
        })
        .collect();
    let mut conn = pool
        .get()
        .await
        .map_err(|e| DispatchError::Connection(e.to_string()))?;
    enqueue_batch(
        &mut *conn,
        script,
        &source.keys.stream,
        source.config.dedup_ttl_seconds,
        &items,
    )
    .await
    .map_err(|e| DispatchError::Redis(e.to_string()))
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Room for every connection a worker serves at once; beyond it senders wait (backpressure).
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(AUDIT_HANDOFF, |act, _| act.hand_off_audit());
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> Running {
        self.hand_off_audit();
        Running::Stop
    }
}

impl Handler<Enqueue> for Dispatcher {
    type Result = ResponseFuture<Result<Enqueued, DispatchError>>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        let Enqueue { source, event } = msg;
        let (reply, answer) = oneshot::channel();
        let name = source.config.name.clone();
        self.queues
            .entry(name.clone())
            .or_insert_with(|| SourceQueue {
                source,
                waiting: Vec::new(),
                in_flight: false,
            })
            .waiting
            .push(Waiting { event, reply });
        self.flush(&name, ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(DispatchError::Stopped)) })
    }
}
