//! A configured source at run time: its settings, its verifier and its Redis keys.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use crate::config::{SourceConfig, MAX_PARTITIONS};
use crate::idempotency::{body_hash, from_selectors};
use crate::partition_layout::Layout;
use crate::verify::{self, Verifier};

/// The Redis keys of one partition of a source (a source has one unless `partitions` says
/// more). All share one hash tag (`{source}` for the first partition, which is also where a
/// source of one partition keeps everything, `{source#p}` for the others) so that a Lua
/// script may touch several of them on Redis Cluster too.
#[derive(Debug, Clone)]
pub struct SourceKeys {
    /// The stream of accepted events awaiting delivery.
    pub stream: String,
    /// Prefix of de-duplication keys; the idempotency key is appended.
    pub dedup_prefix: String,
    /// The dead-letter stream of every destination of the source.
    pub dead: String,
    /// Written just before `WAIT`, so that the replicas' acknowledgement covers every write
    /// before it (in the source's slot, as the writes it vouches for).
    pub replication_marker: String,
    /// The source's partition layout ([`crate::partition_layout`]); kept in the first
    /// partition's slot.
    pub layout: String,
    /// Delivery outcomes on their way to the audit trail, appended by the settle scripts.
    pub outcomes: String,
    /// Outcomes not appended because `outcomes` was at its bound (PostgreSQL away too long).
    pub outcomes_dropped: String,
    /// The lease of the replica writing this partition to the audit trail.
    pub audit_lease: String,
    /// How far the audit trail has written the partition: the first event (`events`) and
    /// outcome (`outcomes`) not written yet (see `queue::audit_cursor`).
    pub audit_cursor: String,
    /// Written once the partition's data is known to be whole; gone when Redis lost it
    /// (see the `recovery` module).
    pub marker: String,
    /// The last recovery from the audit trail (a hash; the first partition's is used).
    pub recovery: String,
    base: String,
}

/// The Redis keys of one destination of a source.
#[derive(Debug, Clone)]
pub struct DestinationKeys {
    /// The consumer group of this destination, on the source stream and its retry stream.
    pub group: String,
    /// Retries due now, moved here from `retry_schedule`; read through `group`.
    pub retry_stream: String,
    /// Parked deliveries by due time (ms): members are tokens of `parked_prefix` hashes.
    pub retry_schedule: String,
    /// Prefix of the hashes holding parked deliveries.
    pub parked_prefix: String,
    /// The shared circuit breaker state.
    pub circuit: String,
    /// Count of deliveries that reached the destination.
    pub delivered: String,
    /// Count of deliveries that ended in the dead-letter stream.
    pub dead: String,
    /// Count of events the destination did not want (never attempted).
    pub filtered: String,
    /// Dead letters counted for the next notification digest (`notify`).
    pub dead_digest: String,
    /// Prefix of the outbound rate limit's state (a GCRA arrival time, see `queue::rate`).
    pub rate_prefix: String,
    /// Ordered delivery (`queue::ORDER_ADMIT_LUA`): each key's head event.
    pub order_holds: String,
    /// Keys held by a dead head (`on_dead = "block"`), with its event id.
    pub order_blocked: String,
    /// How many events wait behind the head of their key.
    pub order_held: String,
    /// Prefix of each key's list of waiting events.
    pub order_waiting_prefix: String,
    /// The lease of the replica admitting events in order (the sequencer).
    pub order_sequencer: String,
}

impl SourceKeys {
    /// Keys of `source` under `prefix` (of its first partition).
    pub fn new(prefix: &str, source: &str) -> Self {
        SourceKeys::partition(prefix, source, 0)
    }

    /// Keys of partition `p` of `source` under `prefix`. Source names hold no `#`, so no
    /// partition's tag is another source's.
    pub fn partition(prefix: &str, source: &str, p: u16) -> Self {
        let base = if p == 0 {
            format!("{prefix}:{{{source}}}")
        } else {
            format!("{prefix}:{{{source}#{p}}}")
        };
        SourceKeys {
            stream: format!("{base}:stream"),
            dedup_prefix: format!("{base}:dedup:"),
            dead: format!("{base}:dead"),
            replication_marker: format!("{base}:replicated"),
            layout: format!("{base}:layout"),
            outcomes: format!("{base}:outcomes"),
            outcomes_dropped: format!("{base}:outcomes-dropped"),
            audit_lease: format!("{base}:audit:lease"),
            audit_cursor: format!("{base}:audit:cursor"),
            marker: format!("{base}:marker"),
            recovery: format!("{base}:recovery"),
            base,
        }
    }

    /// Keys of one destination in this partition. A source of several partitions shares
    /// the circuit and rate limit of its first partition's: see [`Source::destination_keys`].
    pub fn destination(&self, name: &str) -> DestinationKeys {
        let d = format!("{}:dest:{name}", self.base);
        DestinationKeys {
            group: format!("dest:{name}"),
            retry_stream: format!("{d}:retry"),
            retry_schedule: format!("{d}:schedule"),
            parked_prefix: format!("{d}:parked:"),
            circuit: format!("{d}:circuit"),
            delivered: format!("{d}:delivered"),
            dead: format!("{d}:dead"),
            filtered: format!("{d}:filtered"),
            dead_digest: format!("{d}:dead-digest"),
            order_holds: format!("{d}:order:holds"),
            order_blocked: format!("{d}:order:blocked"),
            order_held: format!("{d}:order:held"),
            order_waiting_prefix: format!("{d}:order:waiting:"),
            order_sequencer: format!("{d}:order:sequencer"),
            rate_prefix: format!("{d}:rate:"),
        }
    }

    /// The suffix of an ordering key's waiting list; long keys are hashed to bound memory.
    pub fn waiting_suffix(key: &str) -> String {
        if key.len() <= 200 {
            key.to_string()
        } else {
            body_hash(key.as_bytes())
        }
    }

    /// The de-duplication key of an idempotency key; long keys are hashed to bound memory.
    pub fn dedup(&self, key: &str) -> String {
        if key.len() <= 200 {
            format!("{}{key}", self.dedup_prefix)
        } else {
            format!("{}{}", self.dedup_prefix, body_hash(key.as_bytes()))
        }
    }
}

/// One source, ready to verify and key webhooks.
pub struct Source {
    pub config: SourceConfig,
    pub verifier: Box<dyn Verifier>,
    /// The first partition's keys; also where the source's shared state (circuits, rate
    /// limits) lives.
    pub keys: SourceKeys,
    /// The keys of every partition the source may have (up to [`MAX_PARTITIONS`]).
    pub partitions: Vec<SourceKeys>,
    /// How many of them delivery reads: every partition ever routed to (it only grows).
    lanes: AtomicUsize,
    /// How many of them webhooks are routed to now (see [`crate::partition_layout`]).
    routing: AtomicU16,
    /// The count before the last change, and until when (ms) its partitions are asked for
    /// keys before a webhook is enqueued.
    previous: AtomicU16,
    previous_until_ms: AtomicU64,
    /// Lower-cased names of headers never stored (secrets, credentials).
    pub redacted_headers: Vec<String>,
    /// One per destination: the Dispatcher wakes the destination's worker in process when it
    /// queued an event, so an idle gateway delivers at once.
    pub wakers: Vec<Arc<tokio::sync::Notify>>,
}

impl Source {
    /// The consumer groups of its destinations on its stream, in configuration order.
    pub fn groups(&self) -> Vec<String> {
        self.config
            .destinations
            .iter()
            .map(|d| self.keys.destination(&d.name).group)
            .collect()
    }

    /// Builds the run-time source from validated config, routing as `layout` says.
    pub fn new(config: SourceConfig, key_prefix: &str, layout: Layout) -> Result<Self, String> {
        let verifier = verify::build(&config)?;
        let mut redacted_headers: Vec<String> = ["authorization", "cookie", "proxy-authorization"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        redacted_headers.extend(verifier.secret_headers().iter().map(|h| h.to_string()));
        Ok(Source {
            keys: SourceKeys::new(key_prefix, &config.name),
            partitions: (0..MAX_PARTITIONS)
                .map(|p| SourceKeys::partition(key_prefix, &config.name, p))
                .collect(),
            lanes: AtomicUsize::new(usize::from(layout.lanes().max(config.partitions))),
            routing: AtomicU16::new(layout.routing()),
            previous: AtomicU16::new(layout.previous),
            previous_until_ms: AtomicU64::new(layout.until_ms),
            wakers: config
                .destinations
                .iter()
                .map(|_| Arc::new(tokio::sync::Notify::new()))
                .collect(),
            config,
            verifier,
            redacted_headers,
        })
    }

    /// The partition an idempotency key belongs to now: de-duplication and the stream entry
    /// of one key always meet in one slot.
    pub fn partition_of(&self, key: &str) -> &SourceKeys {
        &self.partitions[partition_index(key, self.routing())]
    }

    /// The partition the previous count picked for a key, when the count changed less than
    /// one de-duplication window ago and picks another one now: it may hold the key's
    /// de-duplication entry from before the change.
    pub fn previous_partition_of(&self, key: &str, now_ms: u64) -> Option<&SourceKeys> {
        if now_ms >= self.previous_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let previous = usize::from(
            self.previous
                .load(Ordering::Relaxed)
                .clamp(1, MAX_PARTITIONS),
        );
        let (before, now) = (
            partition_index(key, previous),
            partition_index(key, self.routing()),
        );
        (before != now).then(|| &self.partitions[before])
    }

    /// How many partitions webhooks are routed to now.
    pub fn routing(&self) -> usize {
        usize::from(
            self.routing
                .load(Ordering::Relaxed)
                .clamp(1, MAX_PARTITIONS),
        )
    }

    /// The partitions delivery reads, the first included.
    pub fn lanes(&self) -> &[SourceKeys] {
        let lanes = self
            .lanes
            .load(Ordering::Relaxed)
            .clamp(1, self.partitions.len());
        &self.partitions[..lanes]
    }

    /// How it routes now, as a layout (kept by a source rebuilt on a configuration reload).
    pub fn layout(&self) -> Layout {
        Layout {
            partitions: self.routing.load(Ordering::Relaxed),
            previous: self.previous.load(Ordering::Relaxed),
            until_ms: self.previous_until_ms.load(Ordering::Relaxed),
            lanes: self.lanes.load(Ordering::Relaxed) as u16,
        }
    }

    /// Routes as `layout` says (another replica started with a new setting), and reads every
    /// partition it was ever routed to.
    pub fn follow_layout(&self, layout: &Layout) {
        self.previous.store(layout.previous, Ordering::Relaxed);
        self.previous_until_ms
            .store(layout.until_ms, Ordering::Relaxed);
        let routing = layout.routing();
        let before = self.routing.swap(routing, Ordering::Relaxed);
        if before != routing {
            log::info!(
                "source {}: webhooks are now routed to {routing} partition(s) (were {before})",
                self.config.name
            );
        }
        self.lanes
            .fetch_max(usize::from(layout.lanes()), Ordering::Relaxed);
    }

    /// A destination's keys in one partition: its consumer group, retries and counters there,
    /// its circuit and rate limit shared by every partition (kept in the first one's slot).
    pub fn destination_keys(&self, partition: &SourceKeys, name: &str) -> DestinationKeys {
        let shared = self.keys.destination(name);
        DestinationKeys {
            circuit: shared.circuit,
            rate_prefix: shared.rate_prefix,
            ..partition.destination(name)
        }
    }

    /// Lower-case names of the request headers never forwarded to a destination, whatever
    /// its `forward_headers` say: credentials, the source's secret and signature headers.
    pub fn never_forwarded(&self) -> Vec<String> {
        let mut never = self.redacted_headers.clone();
        never.extend(
            self.verifier
                .signature_headers()
                .into_iter()
                .map(|h| h.to_ascii_lowercase()),
        );
        if let Some(h) = &self.config.signature_header {
            never.push(h.to_ascii_lowercase());
        }
        never
    }

    /// Wakes every destination worker of the source.
    pub fn wake(&self) {
        for w in &self.wakers {
            w.notify_one();
        }
    }

    /// Whether the body must parse as JSON for this source.
    pub fn needs_json(&self) -> bool {
        self.verifier.needs_json()
            || self
                .config
                .idempotency_key
                .as_ref()
                .is_some_and(|sels| sels.iter().any(|s| s.needs_json()))
    }

    /// The idempotency key: the configured selectors, else the kind's default, else a body hash.
    pub fn idempotency_key(
        &self,
        headers: &HeaderMap,
        json: Option<&Value>,
        body: &[u8],
    ) -> String {
        let key = match &self.config.idempotency_key {
            Some(selectors) => from_selectors(selectors, headers, json),
            None => self.verifier.default_key(headers, json, body),
        };
        key.unwrap_or_else(|| body_hash(body))
    }

    /// The event type: the configured selector, else the kind's default.
    pub fn event_type(&self, headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        match &self.config.event_type {
            Some(sel) => sel.select(headers, json),
            None => self.verifier.event_type(headers, json),
        }
    }
}

/// Which of `count` partitions a key goes to: a stable hash (CRC-32), the same on every
/// replica and every run.
pub fn partition_index(key: &str, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    crc32fast::hash(key.as_bytes()) as usize % count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_partition_keeps_the_layout_of_a_source_of_one() {
        let one = SourceKeys::new("hg", "c2s");
        assert_eq!(one.stream, "hg:{c2s}:stream");
        assert_eq!(SourceKeys::partition("hg", "c2s", 0).stream, one.stream);
        let third = SourceKeys::partition("hg", "c2s", 2);
        assert_eq!(third.stream, "hg:{c2s#2}:stream");
        assert!(third.dedup("k").starts_with("hg:{c2s#2}:dedup:"));
        assert_eq!(
            third.destination("app").retry_stream,
            "hg:{c2s#2}:dest:app:retry"
        );
    }

    #[test]
    fn keys_spread_over_partitions_stably() {
        assert_eq!(partition_index("anything", 1), 0);
        let mut seen = [0usize; 6];
        for n in 0..6_000 {
            let key = format!("lead-{n}");
            let p = partition_index(&key, 6);
            assert_eq!(p, partition_index(&key, 6));
            seen[p] += 1;
        }
        // Roughly even: each partition within 20 % of its share.
        assert!(seen.iter().all(|&n| (800..=1_200).contains(&n)), "{seen:?}");
    }
}
