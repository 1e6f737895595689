//! Asking the live Redis for its settings, and keeping the latest answer for `/ready`,
//! `/metrics` and the start-up log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError};
use serde::Serialize;

use super::assess::*;
use crate::config::{RedisSettings, Settings};
use crate::redis_client::RedisClient;
use crate::telemetry;

/// How long a `/ready` body may show a report before it is read again.
pub const MAX_AGE: Duration = Duration::from_secs(5);
/// Bound on one reading (connection included).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

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

/// What one master said, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MasterReport {
    /// `host:port` of the master.
    pub address: String,
    #[serde(flatten)]
    pub report: Report,
}

/// The topology's masters and their reports, as `/ready` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readings {
    pub topology: &'static str,
    pub masters: Vec<MasterReport>,
}

impl Readings {
    /// The report of the master most at risk (the only one but on a cluster): what a 2xx
    /// survives is what its weakest master survives.
    pub fn worst(&self) -> Option<&Report> {
        self.masters
            .iter()
            .map(|m| &m.report)
            .max_by_key(|r| (r.data_loss_risk, r.problems.len()))
    }
}

/// Reads every master's settings over connections of its own, bounded by `timeout` (each).
pub async fn read_masters(
    client: &RedisClient,
    min_replicas_acked: u32,
    timeout: Duration,
) -> Result<Readings, String> {
    let primaries = match tokio::time::timeout(timeout, client.primaries()).await {
        Ok(p) => p.map_err(|e| e.to_string())?,
        Err(_) => return Err(format!("no answer within {} ms", timeout.as_millis())),
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut masters = Vec::with_capacity(primaries.len());
    for primary in primaries {
        let read = async {
            let mut conn = primary
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| e.to_string())?;
            read_facts(&mut conn).await.map_err(|e| e.to_string())
        };
        let facts = match tokio::time::timeout(timeout, read).await {
            Ok(facts) => facts.map_err(|e| format!("{}: {e}", primary.address))?,
            Err(_) => {
                return Err(format!(
                    "{}: no answer within {} ms",
                    primary.address,
                    timeout.as_millis()
                ))
            }
        };
        masters.push(MasterReport {
            address: primary.address,
            report: Report::new(facts, min_replicas_acked),
        });
    }
    Ok(Readings {
        topology: client.topology().kind(),
        masters,
    })
}

/// The addresses of the masters read, sorted.
fn master_addresses(readings: &Readings) -> Vec<String> {
    let mut all: Vec<String> = readings.masters.iter().map(|m| m.address.clone()).collect();
    all.sort();
    all
}

/// Reads the settings once (for `check-config`, which has no pool).
pub async fn check(settings: &RedisSettings, timeout: Duration) -> Result<Readings, String> {
    let client = RedisClient::new(&settings.topology, timeout).map_err(|e| e.to_string())?;
    read_masters(&client, settings.min_replicas_acked, timeout).await
}

/// The live check of the gateway's Redis masters: re-read in the background, cached for
/// `/ready`.
pub struct DurabilityMonitor {
    client: Arc<RedisClient>,
    min_replicas_acked: u32,
    latest: Mutex<Option<(Instant, Readings)>>,
    reading: AtomicBool,
}

impl DurabilityMonitor {
    /// Starts watching without waiting for Redis (it may be down): checks at once, then every
    /// `server.metrics_interval_seconds`; logs the findings the first time Redis answers and
    /// whenever they change, and tells `failover` (before, after) when the masters in use
    /// change (a Sentinel or Cluster failover seen).
    pub fn spawn(
        client: Arc<RedisClient>,
        settings: &Settings,
        failover: impl Fn(Vec<String>, Vec<String>) + 'static,
    ) -> Arc<DurabilityMonitor> {
        let monitor = Arc::new(DurabilityMonitor {
            client,
            min_replicas_acked: settings.redis.min_replicas_acked,
            latest: Mutex::new(None),
            reading: AtomicBool::new(false),
        });
        let watch = monitor.clone();
        let every = Duration::from_secs(settings.server.metrics_interval_seconds);
        actix_web::rt::spawn(async move {
            let mut interval = actix_web::rt::time::interval(every);
            let mut logged: Option<Readings> = None;
            let mut masters: Vec<String> = Vec::new();
            loop {
                interval.tick().await;
                match watch.read().await {
                    Ok(readings) if logged.as_ref() != Some(&readings) => {
                        watch.log(&readings);
                        let now = master_addresses(&readings);
                        if !masters.is_empty() && now != masters {
                            log::warn!("redis: the masters changed from {masters:?} to {now:?}");
                            failover(masters.clone(), now.clone());
                        }
                        masters = now;
                        logged = Some(readings);
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("redis durability not checked: {e}"),
                }
            }
        });
        monitor
    }

    /// The latest readings (`None` until Redis first answered). When it is older than
    /// [`MAX_AGE`] a new reading starts in the background: a probe never waits for Redis.
    pub fn readings(self: &Arc<Self>) -> Option<Readings> {
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
        latest.map(|(_, readings)| readings)
    }

    /// Reads the settings now, keeps the readings and sets the gauges.
    async fn read(&self) -> Result<Readings, String> {
        let readings = read_masters(&self.client, self.min_replicas_acked, READ_TIMEOUT).await?;
        for m in &readings.masters {
            for reason in RISKS {
                telemetry::redis_data_loss_risk(&m.address, reason, m.report.at_risk(reason));
            }
        }
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some((Instant::now(), readings.clone()));
        }
        Ok(readings)
    }

    fn log(&self, readings: &Readings) {
        for m in &readings.masters {
            let at = &m.address;
            for f in &m.report.problems {
                match f.severity {
                    Severity::Error => log::error!("redis {at}: {}", f.message),
                    Severity::Warning => log::warn!("redis {at}: {}", f.message),
                }
            }
            log::info!("redis {at}: durability: {}", m.report.durability);
        }
    }
}
