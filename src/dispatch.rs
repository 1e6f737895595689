//! The Dispatcher actor: takes verified webhooks from the ingest handlers and de-duplicates
//! and persists each in its source's Redis stream in one atomic step.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::audit::{AuditWriter, NewEventBatch, NewEventRecord};
use crate::queue::{RedisPool, ENQUEUE_LUA};
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
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no Redis connection: {0}")]
    Connection(String),
    #[error("Redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Audit rows handed to the AuditWriter at most this often (or sooner when a batch fills).
const AUDIT_HANDOFF: Duration = Duration::from_millis(20);
const AUDIT_BATCH: usize = 256;

/// Routes verified webhooks into Redis; one runs on each HTTP worker thread, so handing a
/// webhook over never crosses threads. Audit rows are collected here and handed to the
/// AuditWriter in batches: one cross-thread wake-up per batch, not per webhook.
pub struct Dispatcher {
    redis: RedisPool,
    script: Arc<redis::Script>,
    audit: Addr<AuditWriter>,
    pending_audit: Vec<NewEventRecord>,
}

impl Dispatcher {
    /// A dispatcher writing to `redis` and recording accepted events with `audit`.
    pub fn new(redis: RedisPool, audit: Addr<AuditWriter>) -> Self {
        Dispatcher {
            redis,
            script: Arc::new(redis::Script::new(ENQUEUE_LUA)),
            audit,
            pending_audit: Vec::new(),
        }
    }

    fn hand_off_audit(&mut self) {
        if !self.pending_audit.is_empty() {
            let batch = std::mem::take(&mut self.pending_audit);
            self.audit.do_send(NewEventBatch(batch));
        }
    }
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
    type Result = ResponseActFuture<Self, Result<Enqueued, DispatchError>>;

    fn handle(&mut self, msg: Enqueue, _ctx: &mut Self::Context) -> Self::Result {
        let pool = self.redis.clone();
        let script = self.script.clone();
        let work = async move {
            let Enqueue { source, event } = msg;
            let id = event.id.to_string();
            let headers = event.headers.to_string();
            let (new, value): (i64, String) = {
                let mut conn = pool
                    .get()
                    .await
                    .map_err(|e| DispatchError::Connection(e.to_string()))?;
                script
                    .key(source.keys.dedup(&event.key))
                    .key(&source.keys.stream)
                    .arg(&id)
                    .arg(source.config.dedup_ttl_seconds)
                    .arg(&event.key)
                    .arg(event.event_type.as_deref().unwrap_or(""))
                    .arg(event.received_at_ms)
                    .arg(event.content_type.as_deref().unwrap_or(""))
                    .arg(&headers)
                    .arg(event.body.as_ref())
                    .invoke_async(&mut *conn)
                    .await?
            };
            if new == 1 {
                let record = NewEventRecord::new(
                    &source.config.name,
                    source.config.destinations.len(),
                    event,
                    value.clone(),
                );
                Ok::<_, DispatchError>((
                    Enqueued::Queued {
                        id,
                        stream_id: value,
                    },
                    Some((record, source)),
                ))
            } else if value == id {
                // Our own first try: it ran, but its connection broke before the answer came
                // back and the pool ran it again. It is queued; its audit row comes from the
                // stream (the backfill before a trim), as the stream id is not known here.
                source.wake();
                Ok::<_, DispatchError>((
                    Enqueued::Queued {
                        id,
                        stream_id: String::new(),
                    },
                    None,
                ))
            } else {
                Ok::<_, DispatchError>((Enqueued::Duplicate { id: value }, None))
            }
        };
        // The Redis call runs concurrently with other messages; only the bookkeeping after it
        // touches the actor.
        Box::pin(work.into_actor(self).map(|result, act, _ctx| {
            let (done, record) = result?;
            if let Some((record, source)) = record {
                source.wake();
                act.pending_audit.push(record);
                if act.pending_audit.len() >= AUDIT_BATCH {
                    act.hand_off_audit();
                }
            }
            Ok(done)
        }))
    }
}
