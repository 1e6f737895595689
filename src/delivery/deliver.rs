//! The delivery of one entry: parse it, attempt it over HTTP, tell the breaker, decide the
//! outcome, and settle it in Redis with the attempt's record for the audit trail.

use std::rc::Rc;

use redis::streams::StreamId;

use super::decision::{self, Outcome};
use super::http::{self, Attempt};
use super::worker::{Origin, Worker};
use crate::circuit::{now_ms, Transition};
use crate::event::{time_of_ms, AttemptRecord, QueuedEvent};
use crate::notify::Notice;
use crate::retry;
use crate::status::Status;

impl Worker {
    /// Delivers one entry read from `from`'s stream; `probe` when it is the half-open
    /// circuit's probe.
    pub(super) async fn deliver(self: Rc<Self>, entry: StreamId, from: Origin, probe: bool) {
        let mut event = match QueuedEvent::parse(&entry) {
            Ok(e) => e,
            Err(e) => {
                log::error!("{}: dropping malformed entry: {e}", self.name());
                self.ack_only(&entry.id, from).await;
                self.no_verdict(probe).await;
                return;
            }
        };
        // Filters are checked once, on the entry's first read; a retry was wanted already.
        if !from.retry && !self.wants(&event) {
            self.settle_filtered(&entry.id, from, &event).await;
            self.no_verdict(probe).await;
            return;
        }
        // A replay of a dead head straight to this destination carries no key of its own:
        // its key is found again, so that its delivery releases the key it blocks.
        if let Some(ordering) = self.dest.ordering.as_ref().filter(|_| event.okey.is_none()) {
            event.okey = ordering.key_of(&event.headers, &event.body);
        }
        // The circuit opened after this entry was read: it waits without spending an attempt,
        // back in the retry stream at once, where the readers leave it while the circuit is
        // open and find it as soon as it closes, however it closes (a probe, any success
        // begun after the opening, a reset). Parked until the opening's end, it waited that
        // long after an early close, or after a close this view had not seen yet.
        if !probe && self.circuit.is_open() {
            self.metrics.parked.increment(1);
            let park = Outcome::Retry {
                due_ms: now_ms(),
                attempt: event.attempt,
            };
            self.settle(&entry.id, from, &event, park, None, None).await;
            return;
        }
        let n = event.attempt;
        let attempt_started = crate::traces::now();
        let started_ms = now_ms();
        let result = http::attempt(
            &self.client,
            &self.dest,
            &self.forward,
            self.signing_key.as_deref(),
            &self.source.config.name,
            &event,
            n,
        )
        .await;
        self.metrics.latency.record(result.duration.as_secs_f64());
        match decision::circuit_success(&result.verdict) {
            Some(success) => self.record_circuit(success, started_ms).await,
            None => self.no_verdict(probe).await,
        }
        let policy = &self.source.config.retry;
        let outcome = decision::decide(&result.verdict, n, policy, now_ms(), retry::random);
        crate::traces::attempt(
            &event.id,
            &self.source.config.name,
            &self.dest.name,
            n,
            attempt_started,
            result.status,
            outcome.status().as_str(),
        );
        self.metrics.count(&outcome);
        let status = outcome.status();
        log::debug!(
            "delivery source={} destination={} event={} attempt={n} status={:?} outcome={status} ms={}",
            self.source.config.name,
            self.dest.name,
            event.id,
            result.status,
            result.duration.as_millis()
        );
        let error = outcome.error(&result.verdict);
        if let Outcome::Dead { reason } = &outcome {
            if self.notifier.watches(&self.source.config.name) {
                self.notifier
                    .dead_letter(&self.redis, &self.keys.dead_digest, reason)
                    .await;
            }
        }
        let record = self.attempt_record(&event, n, Some(&result), status, error);
        self.settle(
            &entry.id,
            from,
            &event,
            outcome,
            Some(&result),
            record.as_ref(),
        )
        .await;
    }

    /// A probe that will not tell whether the destination answers is given back.
    async fn no_verdict(&self, probe: bool) {
        if !probe {
            return;
        }
        let given = match self.conn().await {
            Ok(mut conn) => self.circuit.give_back_probe(&mut *conn).await,
            Err(e) => Err(e),
        };
        if let Err(e) = given {
            log::debug!(
                "{}: the probe was not given back ({e}); its lease ends it",
                self.name()
            );
        }
    }

    /// Tells the shared breaker how the attempt begun at `started_ms` went (a failure to do
    /// so only delays it), and operators when this outcome opened or closed it.
    pub(super) async fn record_circuit(&self, success: bool, started_ms: u64) {
        let recorded = match self.conn().await {
            Ok(mut conn) => self.circuit.record(&mut *conn, success, started_ms).await,
            Err(e) => Err(e),
        };
        let transition = match recorded {
            Ok(t) => t,
            Err(e) => {
                log::warn!("{}: cannot record circuit outcome: {e}", self.name());
                return;
            }
        };
        if !self.notifier.watches(&self.source.config.name) {
            return;
        }
        let (source, destination) = (self.source.config.name.clone(), self.dest.name.clone());
        let notice = match transition {
            Some(Transition::Opened { failures, until_ms }) => Notice::CircuitOpened {
                source,
                destination,
                failures,
                until_ms,
            },
            Some(Transition::Closed) => Notice::CircuitClosed {
                source,
                destination,
            },
            None => return,
        };
        self.notifier.send(&self.redis, notice).await;
    }

    /// Settles an event the destination does not want: no attempt, status `filtered`.
    pub(super) async fn settle_filtered(&self, entry_id: &str, from: Origin, event: &QueuedEvent) {
        self.metrics.count(&Outcome::Filtered);
        let record = self.attempt_record(event, 0, None, Status::Filtered, None);
        self.settle(
            entry_id,
            from,
            event,
            Outcome::Filtered,
            None,
            record.as_ref(),
        )
        .await;
    }

    /// Whether this destination wants the event: it is not a replay meant for another one,
    /// and it passes the destination's `event_types` and `filter`.
    pub(super) fn wants(&self, event: &QueuedEvent) -> bool {
        if event.only.as_deref().is_some_and(|d| d != self.dest.name) {
            return false;
        }
        let filter = &self.dest.filter;
        if filter.wants_everything() {
            return true;
        }
        let payload: Option<serde_json::Value> = filter
            .needs_payload()
            .then(|| serde_json::from_slice(&event.body).ok())
            .flatten();
        filter.wants(&event.event_type, payload.as_ref())
    }

    /// The attempt's audit record, appended to the outcomes stream as the entry is settled
    /// (attempt 0, without a result, when the destination filtered the event out); None for
    /// an event id that is not a UUID (it cannot have an audit row).
    fn attempt_record(
        &self,
        event: &QueuedEvent,
        n: u32,
        result: Option<&Attempt>,
        status: Status,
        error: Option<String>,
    ) -> Option<AttemptRecord> {
        let event_id = uuid::Uuid::parse_str(&event.id).ok()?;
        Some(AttemptRecord {
            event_id,
            destination: self.dest.name.clone(),
            attempt: n as i32,
            status_code: result.and_then(|r| r.status).map(i32::from),
            duration_ms: result.map_or(0, |r| r.duration.as_millis().min(i32::MAX as u128) as i32),
            error,
            attempted_at: AttemptRecord::now(),
            delivery_status: status,
            received_at: time_of_ms(event.received_at_ms)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        })
    }
}
