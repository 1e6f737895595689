//! Redis settings under which Redis itself can drop accepted webhooks without a word: an
//! eviction policy, no persistence, a lazy fsync, fewer replicas than `WAIT` asks for. The
//! live values (`CONFIG GET`, `INFO replication`) become findings for the start-up log,
//! `hookgate check-config`, `/ready` and the `hookgate_redis_data_loss_risk` gauge.
//!
//! [`assess`] is the judgement, a pure function of what Redis said; [`read_facts`] asks it;
//! [`DurabilityMonitor`] keeps the latest answer for `/ready` and `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError};
use serde::Serialize;

use crate::config::{RedisSettings, Settings};
use crate::queue::RedisPool;
use crate::telemetry;

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

/// How long a `/ready` body may show a report before it is read again.
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// Bound on one reading (connection included).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Whether Redis answered with an error (refused the command), rather than not answering.
fn refused(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// Asks Redis for the settings [`assess`] judges. A refused command leaves its fields `None`
/// (and says why in `refused`); only a connection failure is an error.
pub async fn read_facts<C: ConnectionLike>(conn: &mut C) -> Result<RedisFacts, RedisError> {
    let mut facts = RedisFacts::default();
    // One parameter per CONFIG GET: several in one call need Redis 7.
    for (name, slot) in [
        ("maxmemory-policy", &mut facts.maxmemory_policy),
        ("appendonly", &mut facts.appendonly),
        ("appendfsync", &mut facts.appendfsync),
        ("save", &mut facts.save),
    ] {
        match redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async::<HashMap<String, String>>(conn)
            .await
        {
            Ok(mut values) => *slot = values.remove(name),
            Err(e) if refused(&e) => {
                facts
                    .refused
                    .get_or_insert_with(|| format!("CONFIG GET {name}: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    match redis::cmd("INFO")
        .arg("replication")
        .query_async::<String>(conn)
        .await
    {
        Ok(info) => facts.connected_replicas = connected_replicas(&info),
        Err(e) if refused(&e) => {
            facts
                .refused
                .get_or_insert_with(|| format!("INFO replication: {e}"));
        }
        Err(e) => return Err(e),
    }
    Ok(facts)
}

/// The settings and their findings, as `/ready` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub maxmemory_policy: Option<String>,
    pub appendonly: Option<bool>,
    pub appendfsync: Option<String>,
    pub save: Option<String>,
    pub connected_replicas: Option<u32>,
    /// What a 2xx survives, in one line.
    pub durability: String,
    /// Whether any finding is an error.
    pub data_loss_risk: bool,
    pub problems: Vec<Finding>,
}

impl Report {
    /// Judges `facts` for a gateway waiting for `min_replicas_acked` replicas.
    pub fn new(facts: RedisFacts, min_replicas_acked: u32) -> Report {
        let problems = assess(&facts, min_replicas_acked);
        Report {
            durability: durability(&facts, min_replicas_acked),
            data_loss_risk: problems.iter().any(|f| f.severity == Severity::Error),
            problems,
            maxmemory_policy: facts.maxmemory_policy,
            appendonly: facts.appendonly.map(|a| a == "yes"),
            appendfsync: facts.appendfsync,
            save: facts.save,
            connected_replicas: facts.connected_replicas,
        }
    }

    /// Whether an error finding has this reason.
    pub fn at_risk(&self, reason: &str) -> bool {
        self.problems
            .iter()
            .any(|f| f.severity == Severity::Error && f.reason == reason)
    }
}

/// Reads the settings once over a connection of its own, bounded by `timeout` (for
/// `check-config`, which has no pool).
pub async fn check(settings: &RedisSettings, timeout: Duration) -> Result<Report, String> {
    let read = async {
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| e.to_string())?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        read_facts(&mut conn).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(facts) => Ok(Report::new(facts?, settings.min_replicas_acked)),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// `host:port` of a Redis URL (no password): the `redis` label of the gauge.
fn address(url: &str) -> String {
    redis::Client::open(url)
        .map(|c| c.get_connection_info().addr().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The live check of the gateway's Redis: re-read in the background, cached for `/ready`.
pub struct DurabilityMonitor {
    pool: RedisPool,
    address: String,
    min_replicas_acked: u32,
    latest: Mutex<Option<(Instant, Report)>>,
    reading: AtomicBool,
}

impl DurabilityMonitor {
    /// Starts watching without waiting for Redis (it may be down): checks at once, then every
    /// `server.metrics_interval_seconds`; logs the findings the first time Redis answers and
    /// whenever they change.
    pub fn spawn(pool: RedisPool, settings: &Settings) -> Arc<DurabilityMonitor> {
        let monitor = Arc::new(DurabilityMonitor {
            pool,
            address: address(&settings.redis.url),
            min_replicas_acked: settings.redis.min_replicas_acked,
            latest: Mutex::new(None),
            reading: AtomicBool::new(false),
        });
        let watch = monitor.clone();
        let every = Duration::from_secs(settings.server.metrics_interval_seconds);
        actix_web::rt::spawn(async move {
            let mut interval = actix_web::rt::time::interval(every);
            let mut logged: Option<Vec<Finding>> = None;
            loop {
                interval.tick().await;
                match watch.read().await {
                    Ok(report) if logged.as_ref() != Some(&report.problems) => {
                        watch.log(&report);
                        logged = Some(report.problems);
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("redis durability not checked: {e}"),
                }
            }
        });
        monitor
    }

    /// The latest report (`None` until Redis first answered). When it is older than
    /// [`MAX_AGE`] a new reading starts in the background: a probe never waits for Redis.
    pub fn report(self: &Arc<Self>) -> Option<Report> {
        let latest = self.latest.lock().ok()?.clone();
        let stale = latest
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= MAX_AGE);
        if stale
            && self
                .reading
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            let monitor = self.clone();
            actix_web::rt::spawn(async move {
                if let Err(e) = monitor.read().await {
                    log::debug!("redis durability not checked: {e}");
                }
                monitor.reading.store(false, Ordering::Release);
            });
        }
        latest.map(|(_, report)| report)
    }

    /// Reads the settings now, keeps the report and sets the gauge.
    async fn read(&self) -> Result<Report, String> {
        let read = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            read_facts(&mut *conn).await.map_err(|e| e.to_string())
        };
        let facts = match actix_web::rt::time::timeout(READ_TIMEOUT, read).await {
            Ok(facts) => facts?,
            Err(_) => return Err("timed out".into()),
        };
        let report = Report::new(facts, self.min_replicas_acked);
        for reason in RISKS {
            telemetry::redis_data_loss_risk(&self.address, reason, report.at_risk(reason));
        }
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some((Instant::now(), report.clone()));
        }
        Ok(report)
    }

    fn log(&self, report: &Report) {
        let at = &self.address;
        for f in &report.problems {
            match f.severity {
                Severity::Error => log::error!("redis {at}: {}", f.message),
                Severity::Warning => log::warn!("redis {at}: {}", f.message),
            }
        }
        log::info!("redis {at}: durability: {}", report.durability);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(policy: &str, appendonly: &str, appendfsync: &str, save: &str) -> RedisFacts {
        RedisFacts {
            maxmemory_policy: Some(policy.into()),
            appendonly: Some(appendonly.into()),
            appendfsync: Some(appendfsync.into()),
            save: Some(save.into()),
            connected_replicas: Some(0),
            refused: None,
        }
    }

    fn reasons(findings: &[Finding]) -> Vec<(Severity, &'static str)> {
        findings.iter().map(|f| (f.severity, f.reason)).collect()
    }

    #[test]
    fn noeviction_with_appendfsync_always_has_no_finding() {
        let f = facts("noeviction", "yes", "always", "");
        assert_eq!(assess(&f, 0), []);
        assert_eq!(
            durability(&f, 0),
            "appendfsync always — a 2xx survives a Redis crash or a power cut"
        );
        assert!(!Report::new(f, 0).data_loss_risk);
    }

    #[test]
    fn eviction_and_no_persistence_are_errors() {
        let f = facts("allkeys-lru", "no", "everysec", "");
        let found = assess(&f, 0);
        assert_eq!(
            reasons(&found),
            [
                (Severity::Error, EVICTION),
                (Severity::Error, NO_PERSISTENCE)
            ]
        );
        assert!(found[0].message.contains("allkeys-lru"), "{found:?}");
        assert!(found[0].message.contains("an evicted stream is lost work"));
        assert!(found[1]
            .message
            .contains("a restart loses everything queued"));
        assert!(durability(&f, 0).starts_with("none"));
        let report = Report::new(f, 0);
        assert!(report.data_loss_risk);
        assert!(report.at_risk(EVICTION) && report.at_risk(NO_PERSISTENCE));
        assert!(!report.at_risk(TOO_FEW_REPLICAS));
        assert_eq!(report.appendonly, Some(false));
        // A volatile policy evicts too: the de-duplication keys, which have a TTL.
        let found = assess(&facts("volatile-lru", "yes", "always", ""), 0);
        assert_eq!(reasons(&found), [(Severity::Error, EVICTION)]);
        assert!(found[0].message.contains("queued again"), "{found:?}");
    }

    #[test]
    fn a_lazy_fsync_is_a_warning_that_says_what_a_crash_loses() {
        let found = assess(&facts("noeviction", "yes", "everysec", ""), 0);
        assert_eq!(reasons(&found), [(Severity::Warning, APPENDFSYNC)]);
        assert!(found[0].message.contains("last second"), "{found:?}");
        assert!(found[0].message.contains("appendfsync always"));
        let found = assess(&facts("noeviction", "yes", "no", ""), 0);
        assert_eq!(reasons(&found), [(Severity::Warning, APPENDFSYNC)]);
        assert!(found[0].message.contains("the OS decides"), "{found:?}");
        assert!(!Report::new(facts("noeviction", "yes", "no", ""), 0).data_loss_risk);
    }

    #[test]
    fn snapshots_alone_are_a_warning() {
        let f = facts("noeviction", "no", "everysec", "3600 1 300 100 60 10000");
        let found = assess(&f, 0);
        assert_eq!(reasons(&found), [(Severity::Warning, SNAPSHOTS_ONLY)]);
        assert!(found[0].message.contains("3600 1 300 100 60 10000"));
        assert!(durability(&f, 0).starts_with("snapshots only"));
    }

    #[test]
    fn more_replicas_asked_than_connected_is_an_error() {
        let mut f = facts("noeviction", "yes", "always", "");
        f.connected_replicas = Some(1);
        assert_eq!(assess(&f, 1), []);
        let found = assess(&f, 2);
        assert_eq!(reasons(&found), [(Severity::Error, TOO_FEW_REPLICAS)]);
        assert!(
            found[0].message.contains("min_replicas_acked is 2"),
            "{found:?}"
        );
        assert!(durability(&f, 1).contains("survives a failover"));
        assert!(durability(&f, 2).ends_with("WAIT asks for 2 replica(s) but 1 are connected"));
        // Replicas are not checked when the gateway does not wait for them.
        f.connected_replicas = None;
        assert_eq!(assess(&f, 0), []);
    }

    #[test]
    fn settings_redis_will_not_tell_are_unknown_not_fatal() {
        let f = RedisFacts {
            refused: Some("CONFIG GET maxmemory-policy: ERR unknown command 'CONFIG'".into()),
            connected_replicas: Some(0),
            ..RedisFacts::default()
        };
        let found = assess(&f, 0);
        assert_eq!(reasons(&found), [(Severity::Warning, UNKNOWN)]);
        assert!(
            found[0]
                .message
                .contains("cannot check maxmemory-policy, appendonly (CONFIG GET"),
            "{found:?}"
        );
        assert!(durability(&f, 0).starts_with("unknown"));
        let report = Report::new(f, 0);
        assert!(!report.data_loss_risk);
        assert_eq!(report.appendonly, None);
        // Partly readable: judged on what was read, the rest unknown.
        let mut f = facts("allkeys-lru", "yes", "always", "");
        f.appendfsync = None;
        f.connected_replicas = None;
        assert_eq!(
            reasons(&assess(&f, 1)),
            [(Severity::Error, EVICTION), (Severity::Warning, UNKNOWN)]
        );
        assert!(assess(&f, 1)[1]
            .message
            .contains("appendfsync, connected replicas"));
    }

    #[test]
    fn replicas_are_read_from_info_replication() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.2\r\n";
        assert_eq!(connected_replicas(info), Some(2));
        assert_eq!(connected_replicas("# Replication\r\nrole:slave\r\n"), None);
    }

    #[test]
    fn the_gauge_label_is_the_address_without_the_password() {
        assert_eq!(
            address("redis://:pw@cache.internal:6380/2"),
            "cache.internal:6380"
        );
        assert_eq!(address("redis://127.0.0.1"), "127.0.0.1:6379");
    }

    #[test]
    fn the_report_serializes_as_ready_shows_it() {
        let report = Report::new(facts("allkeys-lru", "no", "everysec", ""), 0);
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["maxmemory_policy"], "allkeys-lru");
        assert_eq!(json["appendonly"], false);
        assert_eq!(json["data_loss_risk"], true);
        assert_eq!(json["problems"][0]["severity"], "error");
        assert_eq!(json["problems"][0]["reason"], "eviction");
    }
}
