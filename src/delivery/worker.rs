//! One destination's worker: reads its consumer group, attempts deliveries, settles each
//! outcome in Redis before acknowledging, promotes due retries and claims deliveries that a
//! dead replica left pending.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamReadReply};
use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore};

use super::http::{self, Attempt, Verdict};
use super::supervisor::Budget;
use crate::circuit::{now_ms, Circuit, Gate};
use crate::config::{DeliverySettings, DestinationConfig};
use crate::event::{AttemptRecord, QueuedEvent};
use crate::queue::{self, RedisPool};
use crate::retry;
use crate::source::{DestinationKeys, Source};
use crate::status::Status;
use crate::verify::standard_webhooks;

/// Most entries read at once.
const READ_BATCH: usize = 128;
/// How long a busy reader waits for more free slots before reading.
const GATHER: Duration = Duration::from_millis(2);
/// How long a reader waits when the process budget has no room for its source.
const BUDGET_WAIT: Duration = Duration::from_millis(10);
/// How often due retries are moved back into work.
const PROMOTE_EVERY: Duration = Duration::from_millis(100);

/// What to do with a delivery after an attempt (or instead of one).
enum Settle {
    Delivered,
    /// Park until `due_ms`; the next read is attempt `attempt`.
    Retry {
        due_ms: u64,
        attempt: u32,
    },
    Dead {
        reason: String,
    },
}

struct Scripts {
    delivered: redis::Script,
    retry: redis::Script,
    dead: redis::Script,
    promote: redis::Script,
    rate: redis::Script,
}

struct Metrics {
    delivered: metrics::Counter,
    retried: metrics::Counter,
    dead: metrics::Counter,
    parked: metrics::Counter,
    retried_over_3: metrics::Counter,
    latency: metrics::Histogram,
}

impl Metrics {
    fn new(source: &str, destination: &str) -> Self {
        let counter = |outcome: &'static str| {
            metrics::counter!(
                "hookgate_delivery_attempts_total",
                "source" => source.to_string(),
                "destination" => destination.to_string(),
                "outcome" => outcome
            )
        };
        Metrics {
            delivered: counter("delivered"),
            retried: counter("retry"),
            dead: counter("dead"),
            parked: counter("parked"),
            retried_over_3: metrics::counter!(
                "hookgate_deliveries_retried_over_3_total",
                "source" => source.to_string(),
                "destination" => destination.to_string()
            ),
            latency: metrics::histogram!(
                "hookgate_delivery_duration_seconds",
                "source" => source.to_string(),
                "destination" => destination.to_string()
            ),
        }
    }
}

/// Delivers one source's events to one destination.
pub struct Worker {
    source: Arc<Source>,
    dest: DestinationConfig,
    keys: DestinationKeys,
    consumer: String,
    redis: RedisPool,
    client: awc::Client,
    circuit: Circuit,
    permits: Arc<Semaphore>,
    wake: Arc<Notify>,
    settings: DeliverySettings,
    visibility: Duration,
    signing_key: Option<Vec<u8>>,
    scripts: Scripts,
    stopping: Rc<Cell<bool>>,
    audit: Rc<RefCell<Vec<AttemptRecord>>>,
    metrics: Metrics,
    /// Entries this worker is delivering right now: a slow one of our own that outlives the
    /// visibility timeout is claimed back by XAUTOCLAIM, but must not be started twice.
    in_flight: RefCell<HashSet<String>>,
    budget: Budget,
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
        audit: Rc<RefCell<Vec<AttemptRecord>>>,
        budget: Budget,
    ) -> Self {
        let dest = source.config.destinations[index].clone();
        let keys = source.keys.destination(&dest.name);
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
            client: http::client(&dest),
            permits: Arc::new(Semaphore::new(dest.max_in_flight)),
            wake: source.wakers[index].clone(),
            metrics: Metrics::new(&source.config.name, &dest.name),
            scripts: Scripts {
                delivered: redis::Script::new(queue::SETTLE_DELIVERED_LUA),
                retry: redis::Script::new(queue::SETTLE_RETRY_LUA),
                dead: redis::Script::new(queue::SETTLE_DEAD_LUA),
                promote: redis::Script::new(queue::PROMOTE_DUE_LUA),
                rate: redis::Script::new(queue::RATE_TAKE_LUA),
            },
            source,
            dest,
            keys,
            consumer,
            redis,
            settings,
            visibility,
            signing_key,
            stopping,
            audit,
            in_flight: RefCell::new(HashSet::new()),
            budget,
        }
    }

    /// Wakes the loops (at shutdown, so they notice).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when no delivery is in flight.
    pub async fn idle(&self) {
        let all = self.dest.max_in_flight as u32;
        if let Ok(permits) = self.permits.acquire_many(all).await {
            drop(permits);
        }
    }

    async fn conn(&self) -> redis::RedisResult<bb8::PooledConnection<'_, queue::RedisManager>> {
        self.redis.get().await.map_err(|e| match e {
            bb8::RunError::User(e) => e,
            bb8::RunError::TimedOut => {
                redis::RedisError::from((redis::ErrorKind::Io, "Redis pool timed out"))
            }
        })
    }

    async fn ensure_groups(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        queue::ensure_group(&mut *conn, &self.source.keys.stream, &self.keys.group).await?;
        queue::ensure_group(&mut *conn, &self.keys.retry_stream, &self.keys.group).await
    }

    async fn pause(&self, d: Duration) {
        let _ = actix_web::rt::time::timeout(d, self.wake.notified()).await;
    }

    fn poll(&self) -> Duration {
        Duration::from_millis(self.settings.poll_interval_ms)
    }

    /// Reads new work until stopped.
    pub async fn run_reader(self: Rc<Self>) {
        let mut groups_ready = false;
        while !self.stopping.get() {
            if !groups_ready {
                match self.ensure_groups().await {
                    Ok(()) => groups_ready = true,
                    Err(e) => {
                        log::warn!(
                            "{}/{}: cannot create consumer groups: {e}",
                            self.source.config.name,
                            self.dest.name
                        );
                        self.pause(self.poll() * 4).await;
                        continue;
                    }
                }
            }
            match self.read_once().await {
                Ok(true) => {}
                Ok(false) => self.pause(self.poll()).await,
                Err(e) if queue::is_nogroup(&e) => {
                    log::warn!(
                        "{}/{}: consumer group lost; re-creating it",
                        self.source.config.name,
                        self.dest.name
                    );
                    groups_ready = false;
                }
                Err(e) => {
                    log::warn!(
                        "{}/{}: reading work failed: {e}",
                        self.source.config.name,
                        self.dest.name
                    );
                    self.pause(self.poll() * 4).await;
                }
            }
        }
    }

    /// One read; `Ok(false)` when there was nothing to do.
    async fn read_once(self: &Rc<Self>) -> redis::RedisResult<bool> {
        let mut conn = self.conn().await?;
        let (want, probe) = match self.circuit.gate(&mut *conn).await? {
            Gate::Wait(d) => {
                drop(conn);
                self.pause(d.min(crate::circuit::REFRESH)).await;
                return Ok(true);
            }
            Gate::Probe => (1, true),
            Gate::Pass => (
                self.permits
                    .available_permits()
                    .min(self.budget.room())
                    .min(READ_BATCH),
                false,
            ),
        };
        if want == 0 {
            drop(conn);
            if self.budget.room() == 0 {
                // Higher-priority sources hold the process budget: yield to them.
                actix_web::rt::time::sleep(BUDGET_WAIT).await;
                return Ok(true);
            }
            // Every slot is busy: wait for one to free up, then briefly for a few more, so the
            // next read fetches a batch rather than one entry per round trip.
            if let Ok(p) = self.permits.acquire().await {
                drop(p);
            }
            let some = (self.dest.max_in_flight / 4).max(1) as u32;
            let _ = actix_web::rt::time::timeout(GATHER, self.permits.acquire_many(some)).await;
            return Ok(true);
        }
        let want = match self.dest.rate_limit_per_second {
            Some(limit) => {
                let second = now_ms() / 1000;
                let granted: usize = self
                    .scripts
                    .rate
                    .key(format!("{}{second}", self.keys.rate_prefix))
                    .arg(second)
                    .arg(want)
                    .arg(limit)
                    .invoke_async(&mut *conn)
                    .await?;
                if granted == 0 {
                    drop(conn);
                    let rest = 1000 - now_ms() % 1000;
                    actix_web::rt::time::sleep(Duration::from_millis(rest)).await;
                    return Ok(true);
                }
                granted
            }
            None => want,
        };
        let reply: StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.keys.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(want)
            .arg("STREAMS")
            .arg(&self.source.keys.stream)
            .arg(&self.keys.retry_stream)
            .arg(">")
            .arg(">")
            .query_async(&mut *conn)
            .await?;
        let mut got = 0;
        for key in reply.keys {
            let from_retry = key.key == self.keys.retry_stream;
            for entry in key.ids {
                got += 1;
                self.spawn_delivery(entry, from_retry, probe);
            }
        }
        if probe && got == 0 {
            // Nothing to probe with: give the probe back so the next event can take it.
            let _: redis::RedisResult<()> = redis::cmd("HSET")
                .arg(&self.keys.circuit)
                .arg("probe_until")
                .arg(0)
                .query_async(&mut *conn)
                .await;
        }
        Ok(got > 0)
    }

    fn spawn_delivery(self: &Rc<Self>, entry: StreamId, from_retry: bool, probe: bool) {
        if !self.in_flight.borrow_mut().insert(entry.id.clone()) {
            return;
        }
        // Slot and budget are taken now, before the reader looks again: counting them inside
        // the task let the reader read past both.
        let permit = self.permits.clone().try_acquire_owned().ok();
        self.budget
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let this = self.clone();
        actix_web::rt::spawn(async move {
            // Two streams are read at once, so a read may bring a little more than the free
            // slots: those wait here for one.
            let _permit = match permit {
                Some(p) => Some(p),
                None => this.permits.clone().acquire_owned().await.ok(),
            };
            let entry_id = entry.id.clone();
            let work =
                AssertUnwindSafe(this.clone().process(entry, from_retry, probe)).catch_unwind();
            let panicked = work.await.is_err();
            this.budget
                .in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            this.in_flight.borrow_mut().remove(&entry_id);
            if panicked {
                log::error!(
                    "{}/{}: delivery of entry {entry_id} panicked; it stays pending and will be claimed again",
                    this.source.config.name,
                    this.dest.name
                );
            }
        });
    }

    async fn process(self: Rc<Self>, entry: StreamId, from_retry: bool, probe: bool) {
        let event = match QueuedEvent::parse(&entry) {
            Ok(e) => e,
            Err(e) => {
                log::error!(
                    "{}/{}: dropping malformed entry: {e}",
                    self.source.config.name,
                    self.dest.name
                );
                self.ack_only(&entry.id, from_retry).await;
                return;
            }
        };
        // The circuit opened after this entry was read: wait without spending an attempt.
        if !probe {
            if let Some(until) = self.circuit.open_until() {
                self.metrics.parked.increment(1);
                let park = Settle::Retry {
                    due_ms: until,
                    attempt: event.attempt,
                };
                self.settle(&entry.id, from_retry, &event, park, None).await;
                return;
            }
        }
        let n = event.attempt;
        let result = http::attempt(
            &self.client,
            &self.dest,
            self.signing_key.as_deref(),
            &self.source.config.name,
            &event,
            n,
        )
        .await;
        self.metrics.latency.record(result.duration.as_secs_f64());
        let circuit_success = match &result.verdict {
            Verdict::Delivered | Verdict::Permanent { .. } => Some(true),
            Verdict::Retry { trips_circuit, .. } => trips_circuit.then_some(false),
        };
        if let Some(success) = circuit_success {
            if let Ok(mut conn) = self.conn().await {
                if let Err(e) = self.circuit.record(&mut *conn, success).await {
                    log::warn!(
                        "{}/{}: cannot record circuit outcome: {e}",
                        self.source.config.name,
                        self.dest.name
                    );
                }
            }
        }
        let policy = &self.source.config.retry;
        let outcome = match &result.verdict {
            Verdict::Delivered => Settle::Delivered,
            Verdict::Permanent { reason } => Settle::Dead {
                reason: reason.clone(),
            },
            Verdict::Retry { reason, .. } if n >= policy.max_attempts => Settle::Dead {
                reason: format!("gave up after {n} attempts: {reason}"),
            },
            Verdict::Retry { after, .. } => {
                let wait =
                    retry::backoff(policy, n, retry::random()).max(after.unwrap_or_default());
                Settle::Retry {
                    due_ms: now_ms() + wait.as_millis() as u64,
                    attempt: n + 1,
                }
            }
        };
        let status = match &outcome {
            Settle::Delivered => {
                self.metrics.delivered.increment(1);
                Status::Delivered
            }
            Settle::Retry { attempt, .. } => {
                self.metrics.retried.increment(1);
                // Counted once per delivery, when its fourth retry is scheduled.
                if *attempt == 5 {
                    self.metrics.retried_over_3.increment(1);
                }
                Status::Retrying
            }
            Settle::Dead { .. } => {
                self.metrics.dead.increment(1);
                Status::Dead
            }
        };
        log::debug!(
            "delivery source={} destination={} event={} attempt={n} status={:?} outcome={status} ms={}",
            self.source.config.name,
            self.dest.name,
            event.id,
            result.status,
            result.duration.as_millis()
        );
        let error = match (&outcome, &result.verdict) {
            (Settle::Dead { reason }, _) => Some(reason.clone()),
            (_, Verdict::Delivered) => None,
            (_, Verdict::Retry { reason, .. } | Verdict::Permanent { reason }) => {
                Some(reason.clone())
            }
        };
        self.record_attempt(&event, n, &result, status, error);
        self.settle(&entry.id, from_retry, &event, outcome, Some(&result))
            .await;
    }

    fn record_attempt(
        &self,
        event: &QueuedEvent,
        n: u32,
        result: &Attempt,
        status: Status,
        error: Option<String>,
    ) {
        let Ok(event_id) = uuid::Uuid::parse_str(&event.id) else {
            return;
        };
        self.audit.borrow_mut().push(AttemptRecord {
            event_id,
            destination: self.dest.name.clone(),
            attempt: n as i32,
            status_code: result.status.map(i32::from),
            duration_ms: result.duration.as_millis().min(i32::MAX as u128) as i32,
            error,
            attempted_at: OffsetDateTime::now_utc(),
            delivery_status: status,
        });
    }

    /// A dead letter: the event, where it was going, why it died and the last answer.
    fn dead_fields(
        &self,
        event: &QueuedEvent,
        reason: String,
        result: Option<&Attempt>,
    ) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = event.fields(event.attempt);
        fields.push(("destination", self.dest.name.as_bytes().to_vec()));
        fields.push(("reason", reason.into_bytes()));
        let status = result
            .and_then(|r| r.status)
            .map(|s| s.to_string())
            .unwrap_or_default();
        fields.push(("status", status.into_bytes()));
        let response = result
            .map(|r| r.response.as_bytes().to_vec())
            .unwrap_or_default();
        fields.push(("response", response));
        fields.push(("failed_at", now_ms().to_string().into_bytes()));
        fields
    }

    fn stream_of(&self, from_retry: bool) -> &str {
        if from_retry {
            &self.keys.retry_stream
        } else {
            &self.source.keys.stream
        }
    }

    /// Runs a settle script, retrying briefly while Redis is unreachable. If it never
    /// succeeds the entry stays pending and is claimed again later: at-least-once.
    async fn run_settle<'s>(
        &self,
        what: &str,
        mut invoke: impl FnMut() -> redis::ScriptInvocation<'s>,
    ) {
        let mut wait = Duration::from_millis(50);
        for _ in 0..8 {
            let result: redis::RedisResult<i64> = match self.conn().await {
                Ok(mut conn) => invoke().invoke_async(&mut *conn).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => return,
                Err(e) => {
                    log::warn!(
                        "{}/{}: settling ({what}) failed: {e}; retrying",
                        self.source.config.name,
                        self.dest.name
                    );
                    actix_web::rt::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        log::error!(
            "{}/{}: could not settle ({what}); the entry stays pending and will be delivered again",
            self.source.config.name,
            self.dest.name
        );
    }

    /// Records an outcome and acknowledges the entry in one script; `result` is the attempt
    /// that led to it, if any (a park for an open circuit has none).
    async fn settle(
        &self,
        entry_id: &str,
        from_retry: bool,
        event: &QueuedEvent,
        outcome: Settle,
        result: Option<&Attempt>,
    ) {
        let stream = self.stream_of(from_retry).to_string();
        let group = self.keys.group.clone();
        let del = if from_retry { "1" } else { "0" };
        let entry_id = entry_id.to_string();
        match outcome {
            Settle::Delivered => {
                let counter = self.keys.delivered.clone();
                let script = &self.scripts.delivered;
                self.run_settle("delivered", || {
                    let mut inv = script.prepare_invoke();
                    inv.key(&stream)
                        .key(&counter)
                        .arg(&group)
                        .arg(&entry_id)
                        .arg(del);
                    inv
                })
                .await
            }
            Settle::Retry { due_ms, attempt } => {
                let token = format!("{}:{attempt}:{}", event.id, uuid::Uuid::now_v7().simple());
                let parked = format!("{}{token}", self.keys.parked_prefix);
                let schedule = self.keys.retry_schedule.clone();
                let fields = event.fields(attempt);
                let script = &self.scripts.retry;
                self.run_settle("retry", || {
                    let mut inv = script.prepare_invoke();
                    inv.key(&stream)
                        .key(&schedule)
                        .key(&parked)
                        .arg(&group)
                        .arg(&entry_id)
                        .arg(del)
                        .arg(due_ms)
                        .arg(&token);
                    for (k, v) in &fields {
                        inv.arg(*k).arg(v.as_slice());
                    }
                    inv
                })
                .await
            }
            Settle::Dead { reason } => {
                let fields = self.dead_fields(event, reason, result);
                let dead = self.source.keys.dead.clone();
                let counter = self.keys.dead.clone();
                let script = &self.scripts.dead;
                self.run_settle("dead", || {
                    let mut inv = script.prepare_invoke();
                    inv.key(&stream)
                        .key(&dead)
                        .key(&counter)
                        .arg(&group)
                        .arg(&entry_id)
                        .arg(del);
                    for (k, v) in &fields {
                        inv.arg(*k).arg(v.as_slice());
                    }
                    inv
                })
                .await
            }
        }
    }

    async fn ack_only(&self, entry_id: &str, from_retry: bool) {
        if let Ok(mut conn) = self.conn().await {
            let _: redis::RedisResult<i64> = redis::cmd("XACK")
                .arg(self.stream_of(from_retry))
                .arg(&self.keys.group)
                .arg(entry_id)
                .query_async(&mut *conn)
                .await;
        }
    }

    /// Moves due retries back into work until stopped.
    pub async fn run_promoter(self: Rc<Self>) {
        while !self.stopping.get() {
            actix_web::rt::time::sleep(PROMOTE_EVERY).await;
            let moved: redis::RedisResult<i64> = match self.conn().await {
                Ok(mut conn) => {
                    self.scripts
                        .promote
                        .key(&self.keys.retry_schedule)
                        .key(&self.keys.retry_stream)
                        .arg(now_ms())
                        .arg(500)
                        .arg(&self.keys.parked_prefix)
                        .invoke_async(&mut *conn)
                        .await
                }
                Err(e) => Err(e),
            };
            match moved {
                Ok(n) if n > 0 => self.wake.notify_one(),
                Ok(_) => {}
                Err(e) => log::debug!(
                    "{}/{}: promoting retries failed: {e}",
                    self.source.config.name,
                    self.dest.name
                ),
            }
        }
    }

    /// Claims deliveries left pending longer than the visibility timeout (a replica died),
    /// and removes consumers long gone, until stopped.
    pub async fn run_claimer(self: Rc<Self>) {
        let every =
            (self.visibility / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
        let mut last_cleanup = Instant::now();
        while !self.stopping.get() {
            actix_web::rt::time::sleep(every).await;
            if self.stopping.get() {
                break;
            }
            for from_retry in [false, true] {
                if let Err(e) = self.claim(from_retry).await {
                    if !queue::is_nogroup(&e) {
                        log::warn!(
                            "{}/{}: claiming pending work failed: {e}",
                            self.source.config.name,
                            self.dest.name
                        );
                    }
                }
            }
            let cleanup_every =
                Duration::from_secs((self.settings.consumer_idle_seconds / 2).clamp(1, 60));
            if last_cleanup.elapsed() > cleanup_every {
                last_cleanup = Instant::now();
                if let Err(e) = self.remove_gone_consumers().await {
                    log::debug!(
                        "{}/{}: consumer cleanup failed: {e}",
                        self.source.config.name,
                        self.dest.name
                    );
                }
            }
        }
    }

    async fn claim(self: &Rc<Self>, from_retry: bool) -> redis::RedisResult<()> {
        let stream = self.stream_of(from_retry).to_string();
        let mut start = "0-0".to_string();
        loop {
            let room = self
                .permits
                .available_permits()
                .min(self.budget.room())
                .min(READ_BATCH);
            if room == 0 {
                return Ok(());
            }
            let mut conn = self.conn().await?;
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(&self.keys.group)
                .arg(&self.consumer)
                .arg(self.visibility.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(room)
                .query_async(&mut *conn)
                .await?;
            if !reply.deleted_ids.is_empty() {
                // Trimmed while pending: nothing left to deliver.
                let _: i64 = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(&self.keys.group)
                    .arg(&reply.deleted_ids)
                    .query_async(&mut *conn)
                    .await?;
            }
            drop(conn);
            if !reply.claimed.is_empty() {
                log::info!(
                    "{}/{}: took over {} pending deliveries",
                    self.source.config.name,
                    self.dest.name,
                    reply.claimed.len()
                );
            }
            for entry in reply.claimed {
                self.spawn_delivery(entry, from_retry, false);
            }
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            start = reply.next_stream_id;
        }
    }

    async fn remove_gone_consumers(&self) -> redis::RedisResult<()> {
        let idle_ms = self.settings.consumer_idle_seconds * 1000;
        let mut conn = self.conn().await?;
        for from_retry in [false, true] {
            let stream = self.stream_of(from_retry);
            let info: StreamInfoConsumersReply = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(stream)
                .arg(&self.keys.group)
                .query_async(&mut *conn)
                .await?;
            for c in info.consumers {
                if c.name != self.consumer && c.pending == 0 && c.idle as u64 > idle_ms {
                    let _: i64 = redis::cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(stream)
                        .arg(&self.keys.group)
                        .arg(&c.name)
                        .query_async(&mut *conn)
                        .await?;
                    log::info!(
                        "{}/{}: removed consumer {} (gone)",
                        self.source.config.name,
                        self.dest.name,
                        c.name
                    );
                }
            }
        }
        Ok(())
    }
}
