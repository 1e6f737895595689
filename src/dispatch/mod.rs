//! The Dispatcher actor: takes verified webhooks from the ingest handlers and de-duplicates
//! and persists each in its source's Redis stream in one atomic step, or, when Redis cannot
//! take it in time, in the replica's spool.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::queue::EnqueueOutcome;
use crate::source::Source;
use crate::spool::Spooled;

mod landing;

use landing::Landed;
pub use landing::Landing;

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
    /// Redis could not take it in time: fsync'd in this replica's spool, enqueued later.
    Spooled { id: String },
}

/// Why an event could not be enqueued (the sender gets a 503 and retries).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    #[error("no Redis connection: {0}")]
    Connection(String),
    #[error("Redis command failed: {0}")]
    Redis(String),
    #[error("{0}")]
    Spool(String),
    #[error("the dispatcher stopped")]
    Stopped,
}

/// One Redis call carries at most this many events, or this many bytes of them.
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Webhooks of one source waiting for its next batch, at most: past it (Redis slow, not yet
/// failed) a webhook lands on its own, in the spool when there is one.
const MAX_WAITING: usize = 4096;

/// A webhook waiting for its source's next batch.
struct Waiting {
    event: NewEvent,
    reply: oneshot::Sender<Result<Enqueued, DispatchError>>,
    /// When it reached the Dispatcher: its wait counts against the sender's deadline.
    arrived: std::time::Instant,
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
/// source's webhook goes at once). Audit rows are not written here: the audit consumer
/// reads accepted events from the streams.
pub struct Dispatcher {
    landing: Landing,
    queues: HashMap<String, SourceQueue>,
}

impl Dispatcher {
    /// A dispatcher landing webhooks through `landing`.
    pub fn new(landing: Landing) -> Self {
        Dispatcher {
            landing,
            queues: HashMap::new(),
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
        let landing = self.landing.clone();
        let name = name.to_string();
        // The oldest webhook has waited behind the previous batch: that time is gone from
        // its sender's deadline.
        let waited = batch
            .first()
            .map_or(Duration::ZERO, |w| w.arrived.elapsed());
        let work = async move {
            let landed = landing.land(&source, &batch, waited).await;
            (batch, landed, source)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(batch, landed, source), act, ctx| {
                    act.settle(&source, batch, landed);
                    if let Some(queue) = act.queues.get_mut(&name) {
                        queue.in_flight = false;
                    }
                    act.flush(&name, ctx);
                }),
        );
    }

    /// Answers each webhook of a finished batch.
    fn settle(&mut self, source: &Arc<Source>, batch: Vec<Waiting>, landed: Vec<Landed>) {
        let mut woken = false;
        for (Waiting { event, reply, .. }, landed) in batch.into_iter().zip(landed) {
            let id = event.id.to_string();
            let answer = match landed {
                Landed::Nowhere(e) => Err(e),
                Landed::Redis(EnqueueOutcome::Queued { stream_id }) => {
                    woken = true;
                    Ok(Enqueued::Queued { id, stream_id })
                }
                // Our own first try: it ran, but its connection broke before the answer came
                // back and the pool ran it again. It is queued (the stream id is not known
                // here; the audit row, written from the stream, has it).
                Landed::Redis(EnqueueOutcome::Seen { first_id }) if first_id == id => {
                    woken = true;
                    Ok(Enqueued::Queued {
                        id,
                        stream_id: String::new(),
                    })
                }
                Landed::Redis(EnqueueOutcome::Seen { first_id }) => {
                    Ok(Enqueued::Duplicate { id: first_id })
                }
                Landed::Redis(EnqueueOutcome::Failed { error }) => Err(DispatchError::Redis(error)),
                Landed::Spool(Ok(Spooled::Written { id })) => {
                    Ok(Enqueued::Spooled { id: id.to_string() })
                }
                Landed::Spool(Ok(Spooled::Duplicate { id })) => {
                    Ok(Enqueued::Duplicate { id: id.to_string() })
                }
                Landed::Spool(Err(e)) => Err(DispatchError::Spool(e.to_string())),
            };
            // The sender may have given up (timeout); nothing to answer then.
            let _ = reply.send(answer);
        }
        if woken {
            source.wake();
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Room for every connection a worker serves at once; beyond it senders wait (backpressure).
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Enqueue> for Dispatcher {
    type Result = ResponseFuture<Result<Enqueued, DispatchError>>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) -> Self::Result {
        let Enqueue { source, event } = msg;
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            event,
            reply,
            arrived: std::time::Instant::now(),
        };
        let name = source.config.name.clone();
        let queue = self
            .queues
            .entry(name.clone())
            .or_insert_with(|| SourceQueue {
                source,
                waiting: Vec::new(),
                in_flight: false,
            });
        if queue.waiting.len() >= MAX_WAITING {
            // Redis is slow enough for webhooks to pile up: this one does not queue behind
            // them (memory, and its sender's deadline).
            let source = queue.source.clone();
            let landing = self.landing.clone();
            let work = async move {
                let batch = vec![waiting];
                let landed = landing.land_late(&source, &batch).await;
                (batch, landed, source)
            };
            ctx.spawn(
                work.into_actor(self)
                    .map(|(batch, landed, source), act, _| act.settle(&source, batch, landed)),
            );
        } else {
            queue.waiting.push(waiting);
            self.flush(&name, ctx);
        }
        Box::pin(async move { answer.await.unwrap_or(Err(DispatchError::Stopped)) })
    }
}
