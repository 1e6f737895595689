//! Logging and metrics: per-webhook debug lines, a periodic info summary, Prometheus metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Starts env_logger at `info` unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    let mut builder = env_logger::Builder::new();
    // actix-http logs every request it refuses by itself (431, 400) as an ERROR "stream
    // error", so any client could flood the log (83,564 lines in 14 s of header bomb);
    // hookgate_http_refusals_total counts them. RUST_LOG=actix_http::h1::dispatcher=debug
    // (this exact name) brings the lines back.
    builder.filter_module("actix_http::h1::dispatcher", log::LevelFilter::Off);
    let _ = builder
        .parse_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .try_init();
}

/// The process-wide Prometheus recorder, installed once (several apps may share a test process).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("static bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed; then our handle just renders ours.
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples wait in a bucket until upkeep drains them: without this, a gateway
        // nobody scrapes would grow by every sample it records.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            });
        handle
    })
}

/// Sets `hookgate_redis_data_loss_risk{redis, reason}`: 1 while the Redis at `redis`
/// (host:port) runs with a setting under which it can lose accepted webhooks (`reason`: see
/// `redis_durability::RISKS`), 0 otherwise.
pub fn redis_data_loss_risk(redis: &str, reason: &'static str, at_risk: bool) {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_gauge!(
            "hookgate_redis_data_loss_risk",
            "1 while Redis runs with a setting under which it can lose accepted webhooks"
        );
    });
    metrics::gauge!(
        "hookgate_redis_data_loss_risk",
        "redis" => redis.to_string(),
        "reason" => reason
    )
    .set(if at_risk { 1.0 } else { 0.0 });
}

/// Describes the durable-ingest series once per process and starts the Redis circuit's
/// gauge at closed (it is set again only when it changes).
pub fn describe_durable_ingest() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_gauge!(
            "hookgate_redis_circuit_state",
            "0 while webhooks go to Redis, 1 while Redis failed and they go to the spool"
        );
        metrics::describe_gauge!(
            "hookgate_spool_events",
            "Webhooks in this replica's spool folders, waiting for Redis"
        );
        metrics::describe_gauge!("hookgate_spool_bytes", "Bytes of those webhooks on disk");
        metrics::describe_counter!(
            "hookgate_spool_drained_total",
            "Spooled webhooks moved into Redis (or found there already)"
        );
        metrics::describe_counter!(
            "hookgate_spool_unknown_source_total",
            "Spool folders left for another replica: they hold webhooks of a source this one lacks"
        );
        metrics::gauge!("hookgate_redis_circuit_state").set(0.0);
    });
}

/// Which configuration generation this process runs (1 at start, one more per reload
/// applied).
pub fn config_generation(generation: u64) {
    metrics::gauge!("hookgate_config_generation").set(generation as f64);
}

/// Counts a reload by its result: `applied`, `unchanged` or `refused` (a mistake in the file).
pub fn config_reload(result: &'static str) {
    metrics::counter!("hookgate_config_reloads_total", "result" => result).increment(1);
}

/// A histogram of microseconds from 1 µs to 10 minutes. Explicit bounds matter:
/// `saturating_record` clamps at the highest trackable value instead of growing.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

/// How one ingest request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Queued,
    Duplicate,
    /// Accepted into the replica's spool while Redis could not take it.
    Spooled,
    Rejected(&'static str),
}

impl Outcome {
    /// The label used in metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Duplicate => "duplicate",
            Outcome::Spooled => "spooled",
            Outcome::Rejected(code) => code,
        }
    }
}

/// Ingest figures since the last summary.
pub struct IngestStats {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    latency_us: Mutex<Histogram<u64>>,
}

impl Default for IngestStats {
    fn default() -> Self {
        IngestStats {
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
            latency_us: Mutex::new(crate::telemetry::latency_histogram()),
        }
    }
}

impl IngestStats {
    /// Counts one request.
    pub fn record(&self, source: &str, outcome: Outcome, elapsed: Duration) {
        match outcome {
            Outcome::Queued | Outcome::Spooled => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Duplicate => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("hookgate_dedup_hits_total", "source" => source.to_string())
                    .increment(1);
            }
            Outcome::Rejected(code) => {
                if let Ok(mut map) = self.rejected.lock() {
                    *map.entry(code).or_default() += 1;
                }
            }
        }
        if let Ok(mut h) = self.latency_us.lock() {
            h.saturating_record(elapsed.as_micros() as u64);
        }
        metrics::counter!(
            "hookgate_ingest_requests_total",
            "source" => source.to_string(),
            "outcome" => outcome.label()
        )
        .increment(1);
        metrics::histogram!("hookgate_ingest_duration_seconds", "source" => source.to_string())
            .record(elapsed.as_secs_f64());
    }

    /// Takes the figures since the last call, as one log line; `None` when nothing happened.
    pub fn take_summary(&self) -> Option<String> {
        let accepted = self.accepted.swap(0, Ordering::Relaxed);
        let duplicates = self.duplicates.swap(0, Ordering::Relaxed);
        let rejected = self
            .rejected
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        let (p50, p99) = self
            .latency_us
            .lock()
            .map(|mut h| {
                let r = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
                h.reset();
                r
            })
            .unwrap_or((0, 0));
        let rejected_total: u64 = rejected.values().sum();
        if accepted + duplicates + rejected_total == 0 {
            return None;
        }
        let reasons = if rejected.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(" ({})", parts.join(", "))
        };
        Some(format!(
            "ingest: accepted={accepted} duplicates={duplicates} rejected={rejected_total}{reasons} p50={:.2}ms p99={:.2}ms",
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        ))
    }
}
