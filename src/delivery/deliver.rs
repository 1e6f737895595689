//! The delivery of one entry: parse it, attempt it over HTTP, tell the breaker, decide the
//! outcome, and settle it in Redis with the attempt's record for the audit trail.

use std::rc::Rc;

use redis::streams::StreamId;

use super::decision::{self, Outcome};
use super::http::{self, Attempt};
use super::worker::{Origin, Worker};
use crate::circuit::now_ms;
use crate::event::{time_of_ms, AttemptRecord, QueuedEvent};
use crate::retry;
use crate::status::Status;

impl Worker {
    /// Delivers one entry read from `from`'s stream; `probe` when it is the half-open
    /// circuit's probe.
    pub(super) async fn deliver(self: Rc<Self>, entry: StreamId, from: Origin, probe: bool) {
        let event = match QueuedEvent::parse(&entry) {
            Ok(e) => e,
            Err(e) => {
                log::error!("{}: dropping malformed entry: {e}", self.name());
                self.ack_only(&entry.id, from).await;
                return;
            }
        };
        // The circuit opened after this entry was read: wait without spending an attempt.
        if !probe {
            if let Some(until) = self.circuit.open_until() {
                self.metrics.parked.increment(1);
                let park = Outcome::Retry {
                    due_ms: until,
                    attempt: event.attempt,
                };
                self.settle(&entry.id, from, &event, park, None, None).await;
                return;
            }
        }
        let n = event.attempt;
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
        if let Some(success) = decision::circuit_success(&result.verdict) {
            self.record_circuit(success).await;
        }
        let policy = &self.source.config.retry;
        let outcome = decision::decide(&result.verdict, n, policy, now_ms(), retry::random);
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
        let record = self.attempt_record(&event, n, &result, status, error);
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

    /// Tells the shared breaker how the attempt went; a failure to do so only delays it.
    async fn record_circuit(&self, success: bool) {
        if let Ok(mut conn) = self.conn().await {
            if let Err(e) = self.circuit.record(&mut *conn, success).await {
                log::warn!("{}: cannot record circuit outcome: {e}", self.name());
            }
        }
    }

    /// The attempt's audit record, appended to the outcomes stream as the entry is settled;
    /// None for an event id that is not a UUID (it cannot have an audit row).
    fn attempt_record(
        &self,
        event: &QueuedEvent,
        n: u32,
        result: &Attempt,
        status: Status,
        error: Option<String>,
    ) -> Option<AttemptRecord> {
        let event_id = uuid::Uuid::parse_str(&event.id).ok()?;
        Some(AttemptRecord {
            event_id,
            destination: self.dest.name.clone(),
            attempt: n as i32,
            status_code: result.status.map(i32::from),
            duration_ms: result.duration.as_millis().min(i32::MAX as u128) as i32,
            error,
            attempted_at: AttemptRecord::now(),
            delivery_status: status,
            received_at: time_of_ms(event.received_at_ms)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        })
    }
}
