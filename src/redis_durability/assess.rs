//! The judgement: what a Redis with these settings can lose, as findings. Pure functions of
//! what Redis said.

use serde::Serialize;

/// Finding reason: keys are evicted when memory is full.
pub const EVICTION: &str = "eviction";
/// Finding reason: neither an append-only file nor snapshots.
pub const NO_PERSISTENCE: &str = "no_persistence";
/// Finding reason: `redis.min_replicas_acked` is more than the connected replicas.
pub const TOO_FEW_REPLICAS: &str = "too_few_replicas";
/// Finding reason (warning): snapshots only, no append-only file.
pub const SNAPSHOTS_ONLY: &str = "snapshots_only";
/// Finding reason (warning): the append-only file is not fsync'd before each reply.
pub const APPENDFSYNC: &str = "appendfsync";
/// Finding reason (warning): a setting could not be read.
pub const UNKNOWN: &str = "unknown";
/// The reasons of error findings: each is a series of `hookgate_redis_data_loss_risk`.
pub const RISKS: [&str; 3] = [EVICTION, NO_PERSISTENCE, TOO_FEW_REPLICAS];

/// What Redis said about its settings; `None` where it did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisFacts {
    pub maxmemory_policy: Option<String>,
    /// `yes` or `no`.
    pub appendonly: Option<String>,
    pub appendfsync: Option<String>,
    /// The snapshot schedule; empty when snapshots are off.
    pub save: Option<String>,
    pub connected_replicas: Option<u32>,
    /// Why settings could not be read, when Redis refused (CONFIG disabled or renamed, as
    /// managed services do, or not allowed by an ACL).
    pub refused: Option<String>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Redis can lose accepted webhooks in normal operation (a restart, full memory).
    Error,
    /// A loss is possible in a crash, or the setting could not be checked.
    Warning,
}

/// One thing wrong with the live Redis settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable code: one of the constants of this module.
    pub reason: &'static str,
    /// One line for people: what is set, what it costs, what to set.
    pub message: String,
}

impl Finding {
    fn error(reason: &'static str, message: String) -> Finding {
        Finding {
            severity: Severity::Error,
            reason,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Finding {
        Finding {
            severity: Severity::Warning,
            reason,
            message,
        }
    }
}

const FIX_PERSISTENCE: &str = "set appendonly yes (with appendfsync always to lose nothing)";

/// Judges the settings Redis reported, for a gateway that waits for `min_replicas_acked`
/// replicas after each batch. Errors first, then warnings.
pub fn assess(facts: &RedisFacts, min_replicas_acked: u32) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut unread = Vec::new();
    match facts.maxmemory_policy.as_deref() {
        Some("noeviction") => {}
        Some(policy) if policy.starts_with("volatile-") => findings.push(Finding::error(
            EVICTION,
            format!(
                "maxmemory-policy is {policy}: when memory is full Redis evicts keys that have \
                 a TTL, the de-duplication keys among them, and a repeated webhook is then \
                 queued again; set maxmemory-policy noeviction (a full Redis then refuses new \
                 webhooks instead)"
            ),
        )),
        Some(policy) => findings.push(Finding::error(
            EVICTION,
            format!(
                "maxmemory-policy is {policy}: when memory is full Redis evicts keys, and an \
                 evicted stream is lost work; set maxmemory-policy noeviction (a full Redis \
                 then refuses new webhooks instead of dropping queued ones)"
            ),
        )),
        None => unread.push("maxmemory-policy"),
    }
    let snapshots = facts.save.as_deref().map(|s| !s.trim().is_empty());
    match (facts.appendonly.as_deref(), snapshots) {
        (Some("yes"), _) => match facts.appendfsync.as_deref() {
            Some("always") => {}
            Some("everysec") => findings.push(Finding::warning(
                APPENDFSYNC,
                "appendfsync is everysec: a crash of Redis or its machine can lose the \
                 webhooks of the last second (2 s at worst) after they were answered 2xx; \
                 appendfsync always loses none"
                    .into(),
            )),
            Some(other) => findings.push(Finding::warning(
                APPENDFSYNC,
                format!(
                    "appendfsync is {other}: the OS decides when the append-only file reaches \
                     the disk, so a machine crash can lose the webhooks of the last seconds \
                     (about 30 s on Linux) after they were answered 2xx; appendfsync always \
                     loses none"
                ),
            )),
            None => unread.push("appendfsync"),
        },
        (Some(_), Some(true)) => findings.push(Finding::warning(
            SNAPSHOTS_ONLY,
            format!(
                "appendonly is no: only snapshots (save \"{}\") reach the disk, so a crash \
                 loses every webhook queued since the last one; {FIX_PERSISTENCE}",
                facts.save.as_deref().unwrap_or_default().trim()
            ),
        )),
        (Some(_), Some(false)) => findings.push(Finding::error(
            NO_PERSISTENCE,
            format!(
                "appendonly is no and save is empty: Redis keeps nothing on disk, so a restart \
                 loses everything queued; {FIX_PERSISTENCE}"
            ),
        )),
        (None, _) => unread.push("appendonly"),
        (Some(_), None) => unread.push("save"),
    }
    if min_replicas_acked > 0 {
        match facts.connected_replicas {
            Some(n) if n >= min_replicas_acked => {}
            Some(n) => findings.push(Finding::error(
                TOO_FEW_REPLICAS,
                format!(
                    "redis.min_replicas_acked is {min_replicas_acked} but Redis has {n} \
                     connected replica(s): no batch can be confirmed on that many, each waits \
                     redis.replica_ack_timeout_ms in vain; add replicas or lower the setting"
                ),
            )),
            None => unread.push("connected replicas"),
        }
    }
    if !unread.is_empty() {
        let why = facts
            .refused
            .as_deref()
            .unwrap_or("Redis did not report them");
        findings.push(Finding::warning(
            UNKNOWN,
            format!(
                "cannot check {} ({why}): make sure Redis runs with maxmemory-policy \
                 noeviction and appendonly yes (appendfsync always to lose nothing)",
                unread.join(", ")
            ),
        ));
    }
    findings.sort_by_key(|f| f.severity != Severity::Error);
    findings
}

/// What a 2xx survives with these settings, in one line.
pub fn durability(facts: &RedisFacts, min_replicas_acked: u32) -> String {
    let snapshots = facts.save.as_deref().map(|s| !s.trim().is_empty());
    let disk = match (facts.appendonly.as_deref(), facts.appendfsync.as_deref()) {
        (Some("yes"), Some("always")) => {
            "appendfsync always — a 2xx survives a Redis crash or a power cut".to_string()
        }
        (Some("yes"), Some("everysec")) => {
            "appendfsync everysec — a crash can lose the last second of 2xx answers".to_string()
        }
        (Some("yes"), Some(other)) => format!(
            "appendfsync {other} — a machine crash can lose the 2xx answers the OS had not \
             written yet"
        ),
        (Some("no"), _) if snapshots == Some(true) => {
            "snapshots only — a crash loses the 2xx answers since the last snapshot".to_string()
        }
        (Some("no"), _) if snapshots == Some(false) => {
            "none — a Redis restart loses everything queued".to_string()
        }
        _ => "unknown — Redis did not report its persistence settings".to_string(),
    };
    match facts.connected_replicas {
        _ if min_replicas_acked == 0 => disk,
        Some(n) if n >= min_replicas_acked => format!(
            "{disk}; each batch waits for {min_replicas_acked} replica(s) (WAIT), so a 2xx \
             also survives a failover to one of them"
        ),
        Some(n) => {
            format!("{disk}; WAIT asks for {min_replicas_acked} replica(s) but {n} are connected")
        }
        None => format!(
            "{disk}; WAIT asks for {min_replicas_acked} replica(s), how many are connected is \
             unknown"
        ),
    }
}

/// `connected_slaves` of an `INFO replication` answer.
pub fn connected_replicas(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
}
