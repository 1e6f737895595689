//! The file's shape as serde reads it, before any check: every field optional or defaulted,
//! unknown fields refused so that a typo is an error rather than a silent default. No `Debug`:
//! these hold secrets and URLs with passwords before they are wrapped.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{CircuitPolicy, RetryPolicy};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) redis: RawRedis,
    pub(super) database: RawDatabase,
    pub(super) audit: RawAudit,
    pub(super) delivery: RawDelivery,
    pub(super) admin: RawAdmin,
    pub(super) spool: RawSpool,
    pub(super) sources: Vec<RawSource>,
    pub(super) notifications: Vec<RawNotification>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotification {
    pub(super) name: Option<String>,
    pub(super) kind: String,
    pub(super) url: String,
    pub(super) secret: Option<String>,
    pub(super) events: Option<Vec<String>>,
    pub(super) digest_seconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) bind: Option<String>,
    pub(super) workers: Option<usize>,
    pub(super) replica_id: Option<String>,
    pub(super) summary_interval_seconds: Option<u64>,
    pub(super) metrics_interval_seconds: Option<u64>,
    pub(super) request_head_timeout_ms: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRedis {
    pub(super) url: Option<String>,
    pub(super) sentinels: Option<Vec<String>>,
    pub(super) sentinel_master: Option<String>,
    pub(super) cluster_nodes: Option<Vec<String>>,
    pub(super) key_prefix: Option<String>,
    pub(super) pool_size: Option<u32>,
    pub(super) enqueue_timeout_ms: Option<u64>,
    pub(super) min_replicas_acked: Option<u32>,
    pub(super) replica_ack_timeout_ms: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDatabase {
    pub(super) url: Option<String>,
    pub(super) pool_size: Option<u32>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAudit {
    pub(super) batch_size: Option<usize>,
    pub(super) flush_interval_ms: Option<u64>,
    pub(super) max_backlog: Option<u64>,
    pub(super) claim_idle_ms: Option<u64>,
    pub(super) nice: Option<i32>,
    pub(super) yield_ms: Option<u64>,
    pub(super) retention_days: Option<u32>,
    pub(super) payload_retention_days: Option<u32>,
    /// No longer used (audit rows wait in Redis, not in memory); accepted so that older
    /// files still load.
    #[allow(dead_code)]
    pub(super) max_buffer_bytes: Option<usize>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDelivery {
    pub(super) enabled: Option<bool>,
    pub(super) claim_margin_ms: Option<u64>,
    pub(super) poll_interval_ms: Option<u64>,
    pub(super) consumer_idle_seconds: Option<u64>,
    pub(super) shutdown_grace_seconds: Option<u64>,
    pub(super) max_in_flight: Option<usize>,
    pub(super) trim_interval_seconds: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSpool {
    pub(super) enabled: Option<bool>,
    pub(super) dir: Option<String>,
    pub(super) max_bytes: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub(super) token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub(super) name: String,
    pub(super) kind: String,
    #[serde(default)]
    pub(super) secrets: Vec<String>,
    #[serde(default = "default_tolerance")]
    pub(super) tolerance_seconds: u64,
    #[serde(default = "default_dedup_ttl")]
    pub(super) dedup_ttl_seconds: u64,
    #[serde(default = "default_max_body")]
    pub(super) max_body_bytes: usize,
    pub(super) idempotency_key: Option<Vec<String>>,
    pub(super) event_type: Option<String>,
    pub(super) path_token: Option<String>,
    pub(super) signature_header: Option<String>,
    pub(super) signature_prefix: Option<String>,
    pub(super) signature_encoding: Option<String>,
    #[serde(default)]
    pub(super) priority: u8,
    #[serde(default = "default_partitions")]
    pub(super) partitions: u16,
    #[serde(default)]
    pub(super) destinations: Vec<RawDestination>,
    #[serde(default)]
    pub(super) retry: RetryPolicy,
    #[serde(default)]
    pub(super) circuit: CircuitPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    pub(super) name: String,
    pub(super) url: String,
    #[serde(default = "default_timeout_ms")]
    pub(super) timeout_ms: u64,
    pub(super) secret: Option<String>,
    pub(super) rate_limit_per_second: Option<u32>,
    #[serde(default = "default_max_in_flight")]
    pub(super) max_in_flight: usize,
    pub(super) event_types: Option<Vec<String>>,
    /// JSON pointer → a value or a list of accepted values.
    #[serde(default)]
    pub(super) filter: BTreeMap<String, serde_json::Value>,
    pub(super) forward_headers: Option<Vec<String>>,
    pub(super) ordering_key: Option<String>,
    pub(super) on_dead: Option<String>,
}

impl RawSource {
    /// A source built by hookgate itself (no sender posts to it), with these defaults.
    pub(super) fn internal(name: &str, kind: &str, secret: String) -> Self {
        RawSource {
            name: name.to_string(),
            kind: kind.to_string(),
            secrets: vec![secret],
            tolerance_seconds: default_tolerance(),
            dedup_ttl_seconds: default_dedup_ttl(),
            max_body_bytes: default_max_body(),
            idempotency_key: None,
            event_type: None,
            path_token: None,
            signature_header: None,
            signature_prefix: None,
            signature_encoding: None,
            priority: 0,
            partitions: default_partitions(),
            destinations: Vec::new(),
            retry: RetryPolicy::default(),
            circuit: CircuitPolicy::default(),
        }
    }
}

fn default_tolerance() -> u64 {
    300
}
fn default_dedup_ttl() -> u64 {
    86_400
}
fn default_max_body() -> usize {
    1_048_576
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_in_flight() -> usize {
    32
}

fn default_partitions() -> u16 {
    1
}
