//! The validated configuration's types, as the rest of hookgate reads them.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigOrigin, NotifySettings, RedactedUrl, RedisTopology, Secret};
use crate::idempotency::Selector;
use crate::routing::{EventFilter, OrderedDelivery};
use crate::signature_kind::{Encoding, Kind};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub origin: ConfigOrigin,
    pub server: ServerSettings,
    pub redis: RedisSettings,
    pub database: DatabaseSettings,
    pub audit: AuditSettings,
    pub delivery: DeliverySettings,
    pub spool: SpoolSettings,
    pub admin_token: Option<Secret>,
    pub sources: Vec<SourceConfig>,
    /// `[[notifications]]` beyond their built-in source (which is among `sources`).
    pub notify: NotifySettings,
    /// Secret fields that took the default of a `${VAR:-default}`, or whose value is a known
    /// placeholder (such as `change-me`): fine for trying hookgate out, wrong in production;
    /// `check-config` and start-up warn about each.
    pub defaulted_secrets: Vec<String>,
}

/// HTTP server settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub bind: String,
    pub workers: Option<usize>,
    pub replica_id: String,
    /// Seconds between the info-level ingest summaries in the log.
    pub summary_interval_seconds: u64,
    /// Seconds between refreshes of the queue gauges of `/metrics`.
    pub metrics_interval_seconds: u64,
    /// A connection's first request head must arrive within this (up to 0.5 s less: actix's
    /// clock ticks every 500 ms), else `408` (slow senders).
    pub request_head_timeout_ms: u64,
}

/// Redis settings.
#[derive(Clone)]
pub struct RedisSettings {
    /// Which Redis: one server, Sentinel or Cluster. Its `Debug` hides passwords.
    pub topology: RedisTopology,
    /// Prefix of every key hookgate writes; lets several gateways or tests share one Redis.
    pub key_prefix: String,
    pub pool_size: u32,
    /// Upper bound on dedup + enqueue before the sender gets a 503.
    pub enqueue_timeout_ms: u64,
    /// Replicas that must have each enqueued batch (`WAIT n timeout`) before its webhooks
    /// are answered `queued`; 0 does not wait.
    pub min_replicas_acked: u32,
    /// The `timeout` of that `WAIT`, below `enqueue_timeout_ms`.
    pub replica_ack_timeout_ms: u64,
}

/// PostgreSQL settings.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// May hold a password: `Debug` shows it as `***`.
    pub url: String,
    pub pool_size: u32,
}

/// Audit consumer settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Most entries of one stream written per transaction.
    pub batch_size: usize,
    /// How long the consumer waits when it found nothing to write.
    pub flush_interval_ms: u64,
    /// Entries one partition holds for the audit trail while PostgreSQL is away: outcomes
    /// past it are dropped (counted), and its stream is trimmed past what is not written yet.
    pub max_backlog: u64,
    /// Entries another replica's audit consumer read and left unwritten this long are taken
    /// over (it died): far longer than a batch takes to write.
    pub claim_idle_ms: u64,
    /// The nice value of the audit consumer's threads (0 to 19): on a host whose CPU is
    /// saturated, answering senders comes first and the trail catches up after.
    pub nice: i32,
    /// Longest the audit consumer waits while the host's CPUs are saturated, so that a
    /// burst is answered first (0: never; at most 60 s); then it writes until it has caught up.
    pub yield_ms: u64,
    /// Days of the trail kept: older daily partitions are dropped whole (`hookgate prune`,
    /// and hourly by one replica).
    pub retention_days: u32,
    /// Days payloads are kept, when shorter: the rows stay, their payloads' partitions go.
    pub payload_retention_days: Option<u32>,
}

/// Delivery workers' settings.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Run delivery workers in this process (an ingest-only replica sets false).
    pub enabled: bool,
    /// Added to a destination's timeout to get the visibility timeout after which another
    /// replica may claim a pending delivery.
    pub claim_margin_ms: u64,
    /// How often an idle worker looks for work that was not announced in process.
    pub poll_interval_ms: u64,
    /// Consumers (replicas) idle this long with nothing pending are removed from the groups.
    pub consumer_idle_seconds: u64,
    /// How long SIGTERM waits for in-flight deliveries.
    pub shutdown_grace_seconds: u64,
    /// How often each source stream is trimmed of entries every destination is done with.
    pub trim_interval_seconds: u64,
    /// Deliveries in flight in this process across all sources; a source of priority `p`
    /// starts new ones only while the total is under `(p + 1) / (highest priority + 1)` of it.
    pub max_in_flight: usize,
}

/// The local spool: webhooks Redis could not take in time, fsync'd on disk and enqueued later.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// Spool when Redis cannot take a webhook in time (false: answer 503 instead).
    pub enabled: bool,
    /// Parent folder; each replica spools into a locked sub-folder of its own.
    pub dir: PathBuf,
    /// Bytes the spool may hold; past them ingest answers 503.
    pub max_bytes: u64,
}

/// One webhook sender, reachable at `POST /webhooks/{name}`.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub kind: Kind,
    pub secrets: Vec<Secret>,
    pub tolerance_seconds: u64,
    pub dedup_ttl_seconds: u64,
    pub max_body_bytes: usize,
    pub idempotency_key: Option<Vec<Selector>>,
    pub event_type: Option<Selector>,
    pub path_token: Option<Secret>,
    pub signature_header: Option<String>,
    pub signature_prefix: Option<String>,
    pub signature_encoding: Option<Encoding>,
    pub priority: u8,
    /// Streams the source's events are spread over, by a hash of the idempotency key.
    pub partitions: u16,
    pub destinations: Vec<DestinationConfig>,
    pub retry: RetryPolicy,
    pub circuit: CircuitPolicy,
    /// Built by hookgate (the notifications), not posted to by a sender: ingest refuses it.
    pub internal: bool,
}

/// One operator service a source's events are delivered to.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub name: String,
    pub url: String,
    pub timeout_ms: u64,
    pub secret: Option<Secret>,
    pub rate_limit_per_second: Option<u32>,
    pub max_in_flight: usize,
    /// Which events it wants (by default, every one).
    pub filter: EventFilter,
    /// Header patterns it is sent (None: the source kind's default).
    pub forward_headers: Option<Vec<String>>,
    /// Events with the same key delivered one at a time, in acceptance order.
    pub ordering: Option<OrderedDelivery>,
}

/// Retry schedule of a source's deliveries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay_ms: 1_000,
            max_delay_ms: 3_600_000,
        }
    }
}

/// Circuit breaker thresholds of a source's destinations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitPolicy {
    pub failure_threshold: u32,
    pub open_seconds: u64,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        CircuitPolicy {
            failure_threshold: 5,
            open_seconds: 60,
        }
    }
}

// Hand-written so that the URLs' passwords never reach a log through `{settings:?}`; the
// fields stay `String` because the pools, the audit writer and the tests take them as such.
impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("topology", &self.topology)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("enqueue_timeout_ms", &self.enqueue_timeout_ms)
            .field("min_replicas_acked", &self.min_replicas_acked)
            .field("replica_ack_timeout_ms", &self.replica_ack_timeout_ms)
            .finish()
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &RedactedUrl(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}
