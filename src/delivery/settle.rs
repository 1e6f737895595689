//! Settling a delivery: its outcome recorded and its entry acknowledged in one script, so an
//! entry is never acknowledged before it is delivered, parked or dead.

use std::time::Duration;

use super::decision::Outcome;
use super::http::Attempt;
use super::worker::{Origin, Worker};
use crate::circuit::now_ms;
use crate::event::{AttemptRecord, QueuedEvent};
use crate::routing::OnDead;
use crate::source::SourceKeys;
use crate::status::Status;

/// Field/value pairs of a stream entry.
type Fields = Vec<(&'static str, Vec<u8>)>;

impl Worker {
    /// A dead letter: the event, where it was going, why it died and the last answer.
    fn dead_fields(&self, event: &QueuedEvent, reason: String, result: Option<&Attempt>) -> Fields {
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
                    log::warn!("{}: settling ({what}) failed: {e}; retrying", self.name());
                    actix_web::rt::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        log::error!(
            "{}: could not settle ({what}); the entry stays pending and will be delivered again",
            self.name()
        );
    }

    /// Records an outcome and acknowledges the entry in one script; `result` is the attempt
    /// that led to it, if any (a park for an open circuit has none), and `record` its audit
    /// record, appended to the lane's outcomes stream in the same script.
    pub(super) async fn settle(
        &self,
        entry_id: &str,
        from: Origin,
        event: &QueuedEvent,
        outcome: Outcome,
        result: Option<&Attempt>,
        record: Option<&AttemptRecord>,
    ) {
        // Retry streams belong to one destination: their entries go once settled.
        let del = if from.retry { "1" } else { "0" };
        let lane = self.lane(from);
        // Each script's own keys after the stream, and its own arguments after the common ones.
        let status = outcome.status();
        let (what, mut script, mut keys, mut args) = match outcome {
            Outcome::Delivered => (
                "delivered",
                &self.scripts.delivered,
                vec![lane.keys.delivered.clone()],
                Vec::new(),
            ),
            // Counted like a delivery, in its own counter.
            Outcome::Filtered => (
                "filtered",
                &self.scripts.delivered,
                vec![lane.keys.filtered.clone()],
                Vec::new(),
            ),
            Outcome::Retry { due_ms, attempt } => {
                let token = format!("{}:{attempt}:{}", event.id, uuid::Uuid::now_v7().simple());
                let parked = format!("{}{token}", lane.keys.parked_prefix);
                let mut args = vec![due_ms.to_string().into_bytes(), token.into_bytes()];
                args.extend(flatten(event.fields(attempt)));
                let keys = vec![lane.keys.retry_schedule.clone(), parked];
                ("retry", &self.scripts.retry, keys, args)
            }
            Outcome::Dead { reason } => {
                let args = flatten(self.dead_fields(event, reason, result));
                let keys = vec![lane.dead.clone(), lane.keys.dead.clone()];
                ("dead", &self.scripts.dead, keys, args)
            }
        };
        // The head of an ordered key: its settling also lets the key's next event go (or,
        // dead with `on_dead = "block"`, keeps the key held).
        let ordered = self.dest.ordering.as_ref().zip(event.okey.as_deref());
        let settles_head = matches!(status, Status::Delivered | Status::Dead);
        let mut releases = false;
        if let Some((ordering, key)) = ordered.filter(|_| settles_head) {
            let mode = match (status, ordering.on_dead) {
                (Status::Dead, OnDead::Block) => "block",
                _ => "release",
            };
            releases = mode == "release";
            if status == Status::Delivered {
                script = &self.scripts.delivered_ordered;
                // The ordered part's keys follow two of the script's own.
                keys.push(lane.keys.delivered.clone());
            } else {
                script = &self.scripts.dead_ordered;
            }
            keys.extend([
                lane.keys.order_holds.clone(),
                lane.keys.order_blocked.clone(),
                lane.keys.retry_stream.clone(),
                lane.keys.order_held.clone(),
                format!(
                    "{}{}",
                    lane.keys.order_waiting_prefix,
                    SourceKeys::waiting_suffix(key)
                ),
            ]);
            let mut ordered_args = vec![
                key.as_bytes().to_vec(),
                event.id.as_bytes().to_vec(),
                lane.keys.parked_prefix.as_bytes().to_vec(),
                mode.as_bytes().to_vec(),
            ];
            ordered_args.append(&mut args);
            args = ordered_args;
        }
        let audit = record.map(|r| flatten(r.fields())).unwrap_or_default();
        self.run_settle(what, || {
            let mut inv = script.prepare_invoke();
            inv.key(self.stream_of(from))
                .key(&lane.outcomes)
                .key(&lane.outcomes_dropped);
            for key in &keys {
                inv.key(key);
            }
            inv.arg(&self.keys.group)
                .arg(entry_id)
                .arg(del)
                .arg(audit.len())
                .arg(self.max_backlog);
            for arg in audit.iter().chain(&args) {
                inv.arg(arg.as_slice());
            }
            inv
        })
        .await;
        if releases {
            // The key's next event may be in the ready stream now: read it at once rather
            // than at the next poll (a busy key would move once per poll otherwise).
            self.notify_ready();
        }
    }

    /// Acknowledges an entry that cannot be delivered at all (malformed): nothing to record.
    pub(super) async fn ack_only(&self, entry_id: &str, from: Origin) {
        if let Ok(mut conn) = self.conn().await {
            let _: redis::RedisResult<i64> = redis::cmd("XACK")
                .arg(self.stream_of(from))
                .arg(&self.keys.group)
                .arg(entry_id)
                .query_async(&mut *conn)
                .await;
        }
    }
}

/// An entry's field/value pairs as one list of script arguments.
fn flatten(fields: Fields) -> Vec<Vec<u8>> {
    fields
        .into_iter()
        .flat_map(|(k, v)| [k.as_bytes().to_vec(), v])
        .collect()
}
