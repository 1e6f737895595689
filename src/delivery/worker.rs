//! One destination's worker: the state its loops share (reader, claimer, promoter, each in
//! its own file), and the spawning of one delivery task per entry.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use redis::streams::StreamId;
use tokio::sync::{Notify, Semaphore};

use super::budget::Budget;
use super::http;
use super::metrics::DeliveryMetrics;
use crate::circuit::Circuit;
use crate::config::{DeliverySettings, DestinationConfig};
use crate::notify::Notifier;
use crate::queue::{self, RedisPool};
use crate::routing::ForwardHeaders;
use crate::source::{DestinationKeys, Source};
use crate::verify::standard_webhooks;

/// Most entries read or claimed at once.
pub(super) const READ_BATCH: usize = 128;

/// The Lua scripts a worker runs, loaded once.
pub(super) struct Scripts {
    pub delivered: redis::Script,
    pub retry: redis::Script,
    pub dead: redis::Script,
    pub promote: redis::Script,
    pub rate: redis::Script,
    /// Ordered delivery: admission, the sequencer lease, and settling a key's head.
    pub admit: redis::Script,
    pub lease: redis::Script,
    pub read_in_order: redis::Script,
    pub sweep: redis::Script,
    pub delivered_ordered: redis::Script,
    pub dead_ordered: redis::Script,
}

/// One partition of the source as a worker reads it: the partition's stream and dead
/// letters, and this destination's retries and counters there.
pub(super) struct Lane {
    pub stream: String,
    pub dead: String,
    /// Where attempts' audit records go, and the count of those dropped at the bound.
    pub outcomes: String,
    pub outcomes_dropped: String,
    pub keys: DestinationKeys,
}

/// Where an entry came from: which lane, and whether from its retry stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    pub lane: usize,
    pub retry: bool,
}

/// Delivers one source's events to one destination, from every partition of the source:
/// one worker, so that the destination's concurrency limit holds whatever the partitions.
pub struct Worker {
    pub(super) source: Arc<Source>,
    pub(super) dest: DestinationConfig,
    /// The keys shared by every lane: the consumer group's name, the circuit, the rate limit.
    pub(super) keys: DestinationKeys,
    pub(super) lanes: Vec<Lane>,
    /// The lane the reader starts its next read with.
    pub(super) next_lane: Cell<usize>,
    pub(super) consumer: String,
    pub(super) redis: RedisPool,
    pub(super) client: awc::Client,
    /// The GCRA state of the destination's outbound rate limit.
    pub(super) rate_key: String,
    /// The sender's headers this destination is sent.
    pub(super) forward: ForwardHeaders,
    pub(super) circuit: Circuit,
    pub(super) permits: Arc<Semaphore>,
    wake: Arc<Notify>,
    /// Wakes the reader of an ordered destination (its sequencer waits on `wake`): events
    /// were admitted or retries are due.
    ready: Notify,
    pub(super) settings: DeliverySettings,
    pub(super) visibility: Duration,
    pub(super) signing_key: Option<Vec<u8>>,
    pub(super) scripts: Scripts,
    pub(super) stopping: Rc<Cell<bool>>,
    /// The bound of a lane's outcomes stream (`audit.max_backlog`).
    pub(super) max_backlog: u64,
    pub(super) metrics: DeliveryMetrics,
    /// Entries this worker is delivering right now: a slow one of our own that outlives the
    /// visibility timeout is claimed back by XAUTOCLAIM, but must not be started twice.
    in_flight: RefCell<HashSet<(Origin, String)>>,
    pub(super) budget: Budget,
    /// Tells operators about circuits and dead letters (`[[notifications]]`).
    pub(super) notifier: Notifier,
}

impl Worker {
    /// A worker for destination `index` of `source`; call the `run_*` loops to start it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        source: Arc<Source>,
        index: usize,
        consumer: String,
        redis: RedisPool,
        settings: DeliverySettings,
        stopping: Rc<Cell<bool>>,
        max_backlog: u64,
        budget: Budget,
        notifier: Notifier,
    ) -> Self {
        let dest = source.config.destinations[index].clone();
        let keys = source.destination_keys(&source.keys, &dest.name);
        // Every partition the source may have: the layout may add lanes while it runs.
        let lanes = source
            .partitions
            .iter()
            .map(|p| Lane {
                stream: p.stream.clone(),
                dead: p.dead.clone(),
                outcomes: p.outcomes.clone(),
                outcomes_dropped: p.outcomes_dropped.clone(),
                keys: source.destination_keys(p, &dest.name),
            })
            .collect();
        // Longer than any attempt can take, so a live replica's delivery is never claimed.
        let visibility = Duration::from_millis(dest.timeout_ms + settings.claim_margin_ms);
        let signing_key = dest
            .secret
            .as_ref()
            .and_then(|s| standard_webhooks::decode_secret(s.expose()).ok());
        Worker {
            circuit: Circuit::new(
                keys.circuit.clone(),
                source.config.circuit.clone(),
                visibility,
            ),
            rate_key: format!("{}gcra", keys.rate_prefix),
            client: http::client(&dest),
            forward: ForwardHeaders::new(
                source.config.kind,
                dest.forward_headers.as_deref(),
                source.never_forwarded(),
            ),
            permits: Arc::new(Semaphore::new(dest.max_in_flight)),
            wake: source.wakers[index].clone(),
            ready: Notify::new(),
            metrics: DeliveryMetrics::new(&source.config.name, &dest.name),
            scripts: Scripts {
                delivered: redis::Script::new(queue::SETTLE_DELIVERED_LUA),
                retry: redis::Script::new(queue::SETTLE_RETRY_LUA),
                dead: redis::Script::new(queue::SETTLE_DEAD_LUA),
                promote: redis::Script::new(queue::PROMOTE_DUE_LUA),
                rate: redis::Script::new(queue::RATE_TAKE_LUA),
                admit: redis::Script::new(queue::ORDER_ADMIT_LUA),
                lease: redis::Script::new(queue::ORDER_LEASE_LUA),
                read_in_order: redis::Script::new(queue::ORDER_READ_LUA),
                sweep: redis::Script::new(queue::ORDER_SWEEP_LUA),
                delivered_ordered: redis::Script::new(queue::SETTLE_DELIVERED_ORDERED_LUA),
                dead_ordered: redis::Script::new(queue::SETTLE_DEAD_ORDERED_LUA),
            },
            source,
            dest,
            keys,
            lanes,
            next_lane: Cell::new(0),
            consumer,
            redis,
            settings,
            visibility,
            signing_key,
            stopping,
            max_backlog,
            in_flight: RefCell::new(HashSet::new()),
            budget,
            notifier,
        }
    }

    /// Wakes the loops (at shutdown, so they notice).
    pub fn wake(&self) {
        self.wake.notify_one();
        self.ready.notify_one();
    }

    /// Resolves when no delivery is in flight.
    pub async fn idle(&self) {
        let all = self.dest.max_in_flight as u32;
        if let Ok(permits) = self.permits.acquire_many(all).await {
            drop(permits);
        }
    }

    /// A pooled connection ([`queue::connection`]).
    pub(super) async fn conn(
        &self,
    ) -> redis::RedisResult<bb8::PooledConnection<'_, queue::RedisManager>> {
        queue::connection(&self.redis).await
    }

    /// Sleeps up to `d`, or until woken (new work, or shutdown).
    pub(super) async fn pause(&self, d: Duration) {
        let _ = actix_web::rt::time::timeout(d, self.wake.notified()).await;
    }

    /// Tells the reader there is work (due retries moved back).
    pub(super) fn notify(&self) {
        if self.dest.ordering.is_some() {
            self.ready.notify_one();
        } else {
            self.wake.notify_one();
        }
    }

    /// Tells the reader of an ordered destination that events were admitted.
    pub(super) fn notify_ready(&self) {
        self.ready.notify_one();
    }

    /// The reader's pause: up to `d`, or until there is work for it.
    pub(super) async fn pause_reader(&self, d: Duration) {
        if self.dest.ordering.is_some() {
            let _ = actix_web::rt::time::timeout(d, self.ready.notified()).await;
        } else {
            self.pause(d).await;
        }
    }

    /// How many more deliveries may start now: free slots, within the process budget.
    pub(super) fn room(&self) -> usize {
        self.permits
            .available_permits()
            .min(self.budget.room())
            .min(READ_BATCH)
    }

    /// Whether the destination's events are delivered in order per key.
    pub fn is_ordered(&self) -> bool {
        self.dest.ordering.is_some()
    }

    /// Whether a lane's source stream is read by the sequencer (ordered destinations order
    /// their source's one partition; partitions left from before `partitions = 1` are read
    /// and delivered unordered, so that nothing in them is stranded).
    pub(super) fn sequenced(&self, lane: usize) -> bool {
        self.is_ordered() && lane == 0
    }

    /// `source/destination`, for log lines.
    pub(super) fn name(&self) -> String {
        format!("{}/{}", self.source.config.name, self.dest.name)
    }

    /// The lane an entry came from.
    pub(super) fn lane(&self, from: Origin) -> &Lane {
        &self.lanes[from.lane]
    }

    /// The lanes read now: every partition the source was ever routed to.
    pub(super) fn active_lanes(&self) -> &[Lane] {
        &self.lanes[..self.source.lanes().len().min(self.lanes.len())]
    }

    /// Every place entries come from: each lane's source stream and retry stream.
    pub(super) fn origins(&self) -> impl Iterator<Item = Origin> + '_ {
        (0..self.active_lanes().len())
            .flat_map(|lane| [false, true].map(move |retry| Origin { lane, retry }))
    }

    /// The stream an entry was read from: its lane's retry stream or source stream.
    pub(super) fn stream_of(&self, from: Origin) -> &str {
        let lane = self.lane(from);
        if from.retry {
            &lane.keys.retry_stream
        } else {
            &lane.stream
        }
    }

    /// Starts the delivery of an entry read or claimed, unless it is already under way here.
    pub(super) fn spawn_delivery(self: &Rc<Self>, entry: StreamId, from: Origin, probe: bool) {
        if !self.in_flight.borrow_mut().insert((from, entry.id.clone())) {
            return;
        }
        // Slot and budget are taken now, before the reader looks again: counting them inside
        // the task let the reader read past both.
        let permit = self.permits.clone().try_acquire_owned().ok();
        let share = self.budget.take();
        let this = self.clone();
        actix_web::rt::spawn(async move {
            // Given back when the task ends, or is dropped with its thread.
            let _share = share;
            // A lane's two streams are read at once, so a read may bring a little more than
            // the free slots: those wait here for one.
            let _permit = match permit {
                Some(p) => Some(p),
                None => this.permits.clone().acquire_owned().await.ok(),
            };
            let entry_id = entry.id.clone();
            if this.stopping.get() {
                // Stopping (shutdown or reload) began while it waited for a slot: it is not
                // started now, but left pending for whoever claims it.
                this.in_flight.borrow_mut().remove(&(from, entry_id));
                return;
            }
            let work = AssertUnwindSafe(this.clone().deliver(entry, from, probe)).catch_unwind();
            let panicked = work.await.is_err();
            this.in_flight
                .borrow_mut()
                .remove(&(from, entry_id.clone()));
            if panicked {
                log::error!(
                    "{}: delivery of entry {entry_id} panicked; it stays pending and will be claimed again",
                    this.name()
                );
            }
        });
    }
}
