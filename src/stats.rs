//! Queue figures read from Redis, for the admin API and the Prometheus gauges.

use redis::streams::StreamInfoGroupsReply;
use serde::Serialize;

use crate::circuit::{self, CircuitState, CircuitStatus};
use crate::sources::Sources;

/// One queue's figures (a destination of a source, or a source in all).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct QueueFigures {
    /// Accepted, not read by the destination's workers yet.
    pub waiting: u64,
    /// Read and being delivered (pending in the consumer group).
    pub active: u64,
    /// Delivered (2xx), a counter.
    pub completed: u64,
    /// Ended in the dead-letter stream, a counter.
    pub failed: u64,
    /// Parked for a later attempt (backoff, or an open circuit).
    pub delayed: u64,
    /// Not wanted by the destination (its filters), never attempted; a counter.
    pub filtered: u64,
    /// Ordered destinations: events waiting behind an earlier event of their key.
    pub held: u64,
    /// Ordered destinations: keys held by a dead event (`on_dead = "block"`).
    pub blocked_keys: u64,
}

impl QueueFigures {
    /// Adds another queue's figures.
    pub fn add(&mut self, o: &QueueFigures) {
        self.waiting += o.waiting;
        self.active += o.active;
        self.completed += o.completed;
        self.failed += o.failed;
        self.delayed += o.delayed;
        self.filtered += o.filtered;
        self.held += o.held;
        self.blocked_keys += o.blocked_keys;
    }
}

/// A destination's figures and breaker.
#[derive(Debug, Clone)]
pub struct DestinationFigures {
    pub name: String,
    pub figures: QueueFigures,
    pub circuit: CircuitState,
}

/// A source's figures.
#[derive(Debug, Clone)]
pub struct SourceFigures {
    pub name: String,
    /// Entries in the source stream (trimmed once every destination is done with them).
    pub stream_length: u64,
    pub dead_letters: u64,
    pub destinations: Vec<DestinationFigures>,
}

impl SourceFigures {
    /// The sum over the source's destinations.
    pub fn total(&self) -> QueueFigures {
        let mut t = QueueFigures::default();
        for d in &self.destinations {
            t.add(&d.figures);
        }
        t
    }
}

/// A stream's groups; none for a stream not created yet.
async fn groups(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> redis::RedisResult<StreamInfoGroupsReply> {
    Ok(crate::queue::stream_groups(conn, stream)
        .await?
        .unwrap_or_default())
}

/// Reads every source's figures, sorted by name.
pub async fn collect(
    conn: &mut impl redis::aio::ConnectionLike,
    sources: &Sources,
) -> redis::RedisResult<Vec<SourceFigures>> {
    let all = sources.sorted();
    let mut out = Vec::with_capacity(all.len());
    for s in all {
        let mut dests: Vec<DestinationFigures> = Vec::new();
        for d in &s.config.destinations {
            let shared = s.destination_keys(&s.keys, &d.name);
            dests.push(DestinationFigures {
                name: d.name.clone(),
                figures: QueueFigures::default(),
                circuit: circuit::read(conn, &shared.circuit).await?,
            });
        }
        let (mut stream_length, mut dead_letters) = (0u64, 0u64);
        // A source of several partitions shows as one: each partition's figures are added.
        for partition in s.lanes() {
            // Counters first, groups second: settling acknowledges and counts in one step,
            // so whatever is counted done here is no longer seen pending below.
            for d in &mut dests {
                let keys = partition.destination(&d.name);
                let (delayed, completed, failed, filtered, held, blocked): (
                    u64,
                    Option<u64>,
                    Option<u64>,
                    Option<u64>,
                    Option<i64>,
                    u64,
                ) = redis::pipe()
                    .cmd("ZCARD")
                    .arg(&keys.retry_schedule)
                    .cmd("GET")
                    .arg(&keys.delivered)
                    .cmd("GET")
                    .arg(&keys.dead)
                    .cmd("GET")
                    .arg(&keys.filtered)
                    .cmd("GET")
                    .arg(&keys.order_held)
                    .cmd("HLEN")
                    .arg(&keys.order_blocked)
                    .query_async(conn)
                    .await?;
                d.figures.held += held.unwrap_or(0).max(0) as u64;
                d.figures.blocked_keys += blocked;
                d.figures.delayed += delayed;
                d.figures.filtered += filtered.unwrap_or(0);
                d.figures.completed += completed.unwrap_or(0);
                d.figures.failed += failed.unwrap_or(0);
            }
            let main = groups(conn, &partition.stream).await?;
            for d in &mut dests {
                let keys = partition.destination(&d.name);
                let retry = groups(conn, &keys.retry_stream).await?;
                for info in [&main, &retry] {
                    if let Some(g) = info.groups.iter().find(|g| g.name == keys.group) {
                        d.figures.waiting += g.lag.unwrap_or(0) as u64;
                        d.figures.active += g.pending as u64;
                    }
                }
            }
            let (length, dead): (u64, u64) = redis::pipe()
                .cmd("XLEN")
                .arg(&partition.stream)
                .cmd("XLEN")
                .arg(&partition.dead)
                .query_async(conn)
                .await?;
            stream_length += length;
            dead_letters += dead;
        }
        out.push(SourceFigures {
            name: s.config.name.clone(),
            stream_length,
            dead_letters,
            destinations: dests,
        });
    }
    Ok(out)
}

/// Sets the Prometheus gauges from fresh figures. Every replica reports the same shared
/// queues: aggregate with `max by (source, destination)`.
pub fn publish(figures: &[SourceFigures]) {
    for s in figures {
        let source = s.name.clone();
        metrics::gauge!("hookgate_stream_length", "source" => source.clone())
            .set(s.stream_length as f64);
        metrics::gauge!("hookgate_dead_letters", "source" => source.clone())
            .set(s.dead_letters as f64);
        for d in &s.destinations {
            let labels = [("source", source.clone()), ("destination", d.name.clone())];
            let f = &d.figures;
            metrics::gauge!("hookgate_queue_waiting", &labels).set(f.waiting as f64);
            metrics::gauge!("hookgate_queue_active", &labels).set(f.active as f64);
            metrics::gauge!("hookgate_queue_delayed", &labels).set(f.delayed as f64);
            metrics::gauge!("hookgate_queue_dead", &labels).set(f.failed as f64);
            metrics::gauge!("hookgate_queue_filtered", &labels).set(f.filtered as f64);
            metrics::gauge!("hookgate_queue_held", &labels).set(f.held as f64);
            metrics::gauge!("hookgate_ordering_blocked_keys", &labels).set(f.blocked_keys as f64);
            let state = match d.circuit.state {
                CircuitStatus::Closed => 0.0,
                CircuitStatus::HalfOpen => 1.0,
                CircuitStatus::Open => 2.0,
            };
            metrics::gauge!("hookgate_circuit_state", &labels).set(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_stream_not_created_yet_has_no_groups() {
        let mut conn = crate::queue::test_connection().await;
        let missing = format!("hookgate-unit:{}:stream", uuid::Uuid::new_v4().simple());
        let info = groups(&mut conn, &missing).await.expect("no groups");
        assert!(info.groups.is_empty());
    }
}
