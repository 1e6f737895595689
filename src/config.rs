//! Configuration: a TOML file, environment overrides and `${VAR}` interpolation, validated once
//! at start-up so that every mistake stops the process with one line naming the field.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::idempotency::Selector;
use crate::verify::{self, Kind};

/// Default Redis URL when neither the file nor `REDIS_URL` sets one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default PostgreSQL URL when neither the file nor `DATABASE_URL` sets one.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/hookgate";
/// Default listen address when neither the file nor `HOOKGATE_BIND`/`PORT` sets one.
pub const DEFAULT_BIND: &str = "0.0.0.0:8080";

/// A configuration mistake, phrased as one line that names the field at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn at(field: impl fmt::Display, message: impl fmt::Display) -> Self {
        ConfigError(format!("{field}: {message}"))
    }
}

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the configuration came from, for `check-config` and the start-up log.
#[derive(Debug, Clone)]
pub enum ConfigOrigin {
    /// Read from this file.
    File(PathBuf),
    /// No file: built-in defaults, no sources.
    Defaults,
    /// Built in code (tests, tools).
    Inline,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::File(p) => write!(f, "{}", p.display()),
            ConfigOrigin::Defaults => f.write_str("built-in defaults (no config file)"),
            ConfigOrigin::Inline => f.write_str("inline configuration"),
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub origin: ConfigOrigin,
    pub server: ServerSettings,
    pub redis: RedisSettings,
    pub database: DatabaseSettings,
    pub audit: AuditSettings,
    pub delivery: DeliverySettings,
    pub admin_token: Option<Secret>,
    pub sources: Vec<SourceConfig>,
    /// Secret fields that took the default of a `${VAR:-default}`: fine for trying hookgate
    /// out, wrong in production; `check-config` and start-up say so.
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
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Prefix of every key hookgate writes; lets several gateways or tests share one Redis.
    pub key_prefix: String,
    pub pool_size: u32,
    /// Upper bound on dedup + enqueue before the sender gets a 503.
    pub enqueue_timeout_ms: u64,
}

/// PostgreSQL settings.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: u32,
}

/// Audit writer settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub batch_size: usize,
    pub flush_interval_ms: u64,
    /// Rows held in memory while PostgreSQL is unreachable, counted in payload bytes.
    pub max_buffer_bytes: usize,
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
    pub signature_encoding: Option<verify::Encoding>,
    pub priority: u8,
    pub destinations: Vec<DestinationConfig>,
    pub retry: RetryPolicy,
    pub circuit: CircuitPolicy,
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

// ---- raw file shape -------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: RawServer,
    redis: RawRedis,
    database: RawDatabase,
    audit: RawAudit,
    delivery: RawDelivery,
    admin: RawAdmin,
    sources: Vec<RawSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    bind: Option<String>,
    workers: Option<usize>,
    replica_id: Option<String>,
    summary_interval_seconds: Option<u64>,
    metrics_interval_seconds: Option<u64>,
    request_head_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRedis {
    url: Option<String>,
    key_prefix: Option<String>,
    pool_size: Option<u32>,
    enqueue_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: Option<String>,
    pool_size: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    batch_size: Option<usize>,
    flush_interval_ms: Option<u64>,
    max_buffer_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDelivery {
    enabled: Option<bool>,
    claim_margin_ms: Option<u64>,
    poll_interval_ms: Option<u64>,
    consumer_idle_seconds: Option<u64>,
    shutdown_grace_seconds: Option<u64>,
    max_in_flight: Option<usize>,
    trim_interval_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    kind: String,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default = "default_tolerance")]
    tolerance_seconds: u64,
    #[serde(default = "default_dedup_ttl")]
    dedup_ttl_seconds: u64,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    idempotency_key: Option<Vec<String>>,
    event_type: Option<String>,
    path_token: Option<String>,
    signature_header: Option<String>,
    signature_prefix: Option<String>,
    signature_encoding: Option<String>,
    #[serde(default)]
    priority: u8,
    #[serde(default)]
    destinations: Vec<RawDestination>,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    circuit: CircuitPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    name: String,
    url: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    secret: Option<String>,
    rate_limit_per_second: Option<u32>,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
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

// ---- loading --------------------------------------------------------------------------------

/// Reads the environment; injected so that loading is testable without touching the process.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as an [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Settings {
    /// Loads the configuration the way `hookgate` does: `--config`, else `HOOKGATE_CONFIG`,
    /// else `./hookgate.toml` when present, else built-in defaults.
    pub fn load(cli_path: Option<&Path>, env: Env<'_>) -> Result<Settings, ConfigError> {
        let path = cli_path
            .map(Path::to_path_buf)
            .or_else(|| env("HOOKGATE_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let local = PathBuf::from("hookgate.toml");
                local.exists().then_some(local)
            });
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", path.display()))
                })?;
                Settings::from_toml(&text, ConfigOrigin::File(path), env)
            }
            None => Settings::from_toml("", ConfigOrigin::Defaults, env),
        }
    }

    /// Parses and validates a TOML document, applying the environment overrides.
    pub fn from_toml(
        text: &str,
        origin: ConfigOrigin,
        env: Env<'_>,
    ) -> Result<Settings, ConfigError> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let message = e.message().replace('\n', " ");
            match line {
                Some(line) => ConfigError(format!("{origin}: line {line}: {message}")),
                None => ConfigError(format!("{origin}: {message}")),
            }
        })?;
        let mut defaulted = Vec::new();
        for (key, item) in value.iter_mut() {
            interpolate(item, key, env, &mut defaulted)?;
        }
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(value))
            .map_err(|e| ConfigError::at(e.path(), e.inner().to_string().replace('\n', " ")))?;
        let mut settings = Settings::validate(raw, origin, env)?;
        settings.defaulted_secrets = defaulted
            .into_iter()
            .filter(|path| {
                let field = path.rsplit('.').next().unwrap_or_default();
                field.starts_with("secrets[")
                    || field == "secret"
                    || field == "path_token"
                    || path == "admin.token"
            })
            .collect();
        Ok(settings)
    }

    fn validate(
        raw: RawConfig,
        origin: ConfigOrigin,
        env: Env<'_>,
    ) -> Result<Settings, ConfigError> {
        let bind = match (env("HOOKGATE_BIND"), env("PORT")) {
            (Some(bind), _) => bind,
            (None, Some(port)) => {
                let port: u16 = port.parse().map_err(|_| {
                    ConfigError::at("PORT", format!("{port:?} is not a port number"))
                })?;
                format!("0.0.0.0:{port}")
            }
            (None, None) => raw.server.bind.unwrap_or_else(|| DEFAULT_BIND.to_string()),
        };
        if bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::at(
                "server.bind",
                format!("{bind:?} is not an address like 0.0.0.0:8080"),
            ));
        }
        let replica_id = env("HOOKGATE_REPLICA_ID")
            .or(raw.server.replica_id)
            .unwrap_or_else(default_replica_id);
        let redis_url = env("REDIS_URL")
            .or(raw.redis.url)
            .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string());
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(ConfigError::at(
                "redis.url",
                "must start with redis:// or rediss://",
            ));
        }
        let database_url = env("DATABASE_URL")
            .or(raw.database.url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::at(
                "database.url",
                "must start with postgres:// or postgresql://",
            ));
        }
        let key_prefix = raw
            .redis
            .key_prefix
            .unwrap_or_else(|| "hookgate".to_string());
        if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
            return Err(ConfigError::at(
                "redis.key_prefix",
                "must be non-empty, without braces or spaces",
            ));
        }
        let admin_token = env("HOOKGATE_ADMIN_TOKEN")
            .or(raw.admin.token)
            .filter(|t| !t.is_empty());

        let mut names = HashSet::new();
        let mut sources = Vec::with_capacity(raw.sources.len());
        for (i, s) in raw.sources.into_iter().enumerate() {
            let field = format!("sources[{i}]");
            if !names.insert(s.name.clone()) {
                return Err(ConfigError::at(
                    format!("{field}.name"),
                    format!("duplicate source name {:?}", s.name),
                ));
            }
            sources.push(validate_source(s, &field)?);
        }

        Ok(Settings {
            origin,
            server: ServerSettings {
                bind,
                workers: raw.server.workers.filter(|w| *w > 0),
                replica_id,
                summary_interval_seconds: raw.server.summary_interval_seconds.unwrap_or(10).max(1),
                metrics_interval_seconds: raw.server.metrics_interval_seconds.unwrap_or(10).max(1),
                request_head_timeout_ms: raw
                    .server
                    .request_head_timeout_ms
                    .unwrap_or(3_000)
                    .clamp(1_000, 60_000),
            },
            redis: RedisSettings {
                url: redis_url,
                key_prefix,
                pool_size: raw.redis.pool_size.unwrap_or(16).max(1),
                enqueue_timeout_ms: raw
                    .redis
                    .enqueue_timeout_ms
                    .unwrap_or(2_000)
                    .clamp(50, 4_500),
            },
            database: DatabaseSettings {
                url: database_url,
                pool_size: raw.database.pool_size.unwrap_or(4).max(1),
            },
            audit: AuditSettings {
                batch_size: raw.audit.batch_size.unwrap_or(1_000).clamp(1, 5_000),
                flush_interval_ms: raw.audit.flush_interval_ms.unwrap_or(100).max(10),
                max_buffer_bytes: raw.audit.max_buffer_bytes.unwrap_or(64 * 1024 * 1024),
            },
            delivery: DeliverySettings {
                enabled: raw.delivery.enabled.unwrap_or(true),
                claim_margin_ms: raw.delivery.claim_margin_ms.unwrap_or(10_000).max(100),
                poll_interval_ms: raw
                    .delivery
                    .poll_interval_ms
                    .unwrap_or(250)
                    .clamp(10, 10_000),
                consumer_idle_seconds: raw.delivery.consumer_idle_seconds.unwrap_or(3_600).max(1),
                shutdown_grace_seconds: raw.delivery.shutdown_grace_seconds.unwrap_or(10),
                max_in_flight: raw.delivery.max_in_flight.unwrap_or(1_024).max(1),
                trim_interval_seconds: raw.delivery.trim_interval_seconds.unwrap_or(30).max(1),
            },
            admin_token: admin_token.map(Secret::new),
            sources,
            defaulted_secrets: Vec::new(),
        })
    }

    /// The source with this name.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

fn default_replica_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{host}-{}", std::process::id())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_source(s: RawSource, field: &str) -> Result<SourceConfig, ConfigError> {
    if !valid_name(&s.name) {
        return Err(ConfigError::at(
            format!("{field}.name"),
            format!("{:?} must be 1-64 letters, digits, '-' or '_'", s.name),
        ));
    }
    let field = format!("{field} ({})", s.name);
    let kind: Kind = s.kind.parse().map_err(|_| {
        ConfigError::at(
            format!("{field}.kind"),
            format!(
                "unknown kind {:?}; expected one of: {}",
                s.kind,
                Kind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    if s.secrets.is_empty() {
        return Err(ConfigError::at(
            format!("{field}.secrets"),
            "at least one secret is required",
        ));
    }
    for (j, secret) in s.secrets.iter().enumerate() {
        if secret.trim().is_empty() {
            return Err(ConfigError::at(format!("{field}.secrets[{j}]"), "is empty"));
        }
    }
    if s.max_body_bytes == 0 {
        return Err(ConfigError::at(
            format!("{field}.max_body_bytes"),
            "must be greater than 0",
        ));
    }
    if s.dedup_ttl_seconds == 0 {
        return Err(ConfigError::at(
            format!("{field}.dedup_ttl_seconds"),
            "must be greater than 0",
        ));
    }
    let idempotency_key = match s.idempotency_key {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(ConfigError::at(
                format!("{field}.idempotency_key"),
                "is an empty list",
            ));
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(j, sel)| {
                    sel.parse::<Selector>()
                        .map_err(|e| ConfigError::at(format!("{field}.idempotency_key[{j}]"), e))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let event_type = s
        .event_type
        .map(|sel| sel.parse::<Selector>())
        .transpose()
        .map_err(|e| ConfigError::at(format!("{field}.event_type"), e))?;
    let path_token = match s.path_token {
        Some(t) if t.trim().is_empty() => {
            return Err(ConfigError::at(format!("{field}.path_token"), "is empty"));
        }
        Some(t) if !t.bytes().all(|b| b.is_ascii_graphic() && b != b'/') => {
            return Err(ConfigError::at(
                format!("{field}.path_token"),
                "must be printable ASCII without '/'",
            ));
        }
        other => other.map(Secret::new),
    };
    if kind == Kind::Token
        && s.secrets
            .iter()
            .any(|t| !t.bytes().all(|b| b.is_ascii_graphic() && b != b'/'))
    {
        return Err(ConfigError::at(
            format!("{field}.secrets"),
            "token secrets must be printable ASCII without '/' (they are URL path segments)",
        ));
    }
    let signature_encoding = s
        .signature_encoding
        .map(|e| e.parse::<verify::Encoding>())
        .transpose()
        .map_err(|e| ConfigError::at(format!("{field}.signature_encoding"), e))?;

    if s.priority > 9 {
        return Err(ConfigError::at(
            format!("{field}.priority"),
            "must be 0 (default) to 9 (most important)",
        ));
    }
    if s.retry.max_attempts == 0 {
        return Err(ConfigError::at(
            format!("{field}.retry.max_attempts"),
            "must be at least 1",
        ));
    }
    if s.retry.base_delay_ms == 0 || s.retry.base_delay_ms > s.retry.max_delay_ms {
        return Err(ConfigError::at(
            format!("{field}.retry.base_delay_ms"),
            "must be greater than 0 and at most retry.max_delay_ms",
        ));
    }
    if s.circuit.failure_threshold == 0 {
        return Err(ConfigError::at(
            format!("{field}.circuit.failure_threshold"),
            "must be at least 1",
        ));
    }
    if s.circuit.open_seconds == 0 {
        return Err(ConfigError::at(
            format!("{field}.circuit.open_seconds"),
            "must be at least 1",
        ));
    }

    let mut dest_names = HashSet::new();
    let mut destinations = Vec::with_capacity(s.destinations.len());
    for (j, d) in s.destinations.into_iter().enumerate() {
        let dfield = format!("{field}.destinations[{j}]");
        if !valid_name(&d.name) {
            return Err(ConfigError::at(
                format!("{dfield}.name"),
                format!("{:?} must be 1-64 letters, digits, '-' or '_'", d.name),
            ));
        }
        if !dest_names.insert(d.name.clone()) {
            return Err(ConfigError::at(
                format!("{dfield}.name"),
                format!("duplicate destination name {:?}", d.name),
            ));
        }
        validate_url(&d.url).map_err(|e| ConfigError::at(format!("{dfield}.url"), e))?;
        if d.timeout_ms == 0 || d.timeout_ms > 600_000 {
            return Err(ConfigError::at(
                format!("{dfield}.timeout_ms"),
                "must be between 1 and 600000",
            ));
        }
        if let Some(secret) = &d.secret {
            verify::standard_webhooks::decode_secret(secret)
                .map_err(|e| ConfigError::at(format!("{dfield}.secret"), e))?;
        }
        if d.rate_limit_per_second == Some(0) {
            return Err(ConfigError::at(
                format!("{dfield}.rate_limit_per_second"),
                "must be at least 1 (omit it for no limit)",
            ));
        }
        destinations.push(DestinationConfig {
            name: d.name,
            url: d.url,
            timeout_ms: d.timeout_ms,
            secret: d.secret.map(Secret::new),
            rate_limit_per_second: d.rate_limit_per_second,
            max_in_flight: d.max_in_flight.max(1),
        });
    }

    let config = SourceConfig {
        name: s.name,
        kind,
        secrets: s.secrets.into_iter().map(Secret::new).collect(),
        tolerance_seconds: s.tolerance_seconds,
        dedup_ttl_seconds: s.dedup_ttl_seconds,
        max_body_bytes: s.max_body_bytes,
        idempotency_key,
        event_type,
        path_token,
        signature_header: s.signature_header,
        signature_prefix: s.signature_prefix,
        signature_encoding,
        priority: s.priority,
        destinations,
        retry: s.retry,
        circuit: s.circuit,
    };
    // Building the verifier checks the kind-specific fields (secret formats, header names).
    verify::build(&config).map_err(|e| ConfigError::at(&field, e))?;
    Ok(config)
}

fn validate_url(url: &str) -> Result<(), String> {
    let uri: actix_web::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// Replaces `${VAR}` (and `${VAR:-default}`) in every string of the document, noting in
/// `defaulted` the fields that took a default.
fn interpolate(
    value: &mut toml::Value,
    path: &str,
    env: Env<'_>,
    defaulted: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            let (expanded, used_default) = expand(s, env).map_err(|var| {
                ConfigError::at(path, format!("environment variable {var} is not set"))
            })?;
            if used_default {
                defaulted.push(path.to_string());
            }
            *s = expanded;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let p = format!("{path}[{i}]");
                interpolate(item, &p, env, defaulted)?;
            }
        }
        toml::Value::Table(table) => {
            let name = table
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            for (key, item) in table.iter_mut() {
                let p = format!("{path}{name}.{key}");
                interpolate(item, &p, env, defaulted)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${VAR}` and `${VAR:-default}`, saying whether a default was used; the error is
/// the name of the first unset variable.
pub fn expand(input: &str, env: Env<'_>) -> Result<(String, bool), String> {
    let mut used_default = false;
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok((out, used_default));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => {
                used_default = true;
                out.push_str(d);
            }
            (None, None) => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, used_default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn load(
        text: &str,
        pairs: &'static [(&'static str, &'static str)],
    ) -> Result<Settings, ConfigError> {
        let env = env_of(pairs);
        Settings::from_toml(text, ConfigOrigin::Inline, &env)
    }

    const PLUGGY: &str = r#"
[[sources]]
name = "pluggy"
kind = "pluggy"
secrets = ["${PLUGGY_SECRET}"]
[[sources.destinations]]
name = "app"
url = "http://app:9000/hooks/pluggy"
"#;

    #[test]
    fn defaults_without_file() {
        let s = load("", &[]).expect("defaults load");
        assert_eq!(s.redis.url, DEFAULT_REDIS_URL);
        assert_eq!(s.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(s.server.bind, DEFAULT_BIND);
        assert!(s.sources.is_empty());
        assert!(s.admin_token.is_none());
    }

    #[test]
    fn environment_overrides_and_interpolation() {
        let s = load(
            PLUGGY,
            &[
                ("PLUGGY_SECRET", "s3cret"),
                ("REDIS_URL", "redis://r:6379"),
                ("PORT", "9090"),
                ("HOOKGATE_ADMIN_TOKEN", "tok"),
            ],
        )
        .expect("loads");
        assert_eq!(s.redis.url, "redis://r:6379");
        assert_eq!(s.server.bind, "0.0.0.0:9090");
        assert_eq!(s.sources[0].secrets[0].expose(), "s3cret");
        assert_eq!(s.admin_token.as_ref().map(Secret::expose), Some("tok"));
        assert_eq!(s.sources[0].destinations[0].timeout_ms, 5000);
    }

    #[test]
    fn missing_variable_names_the_variable_and_field() {
        let err = load(PLUGGY, &[]).unwrap_err().to_string();
        assert!(err.contains("PLUGGY_SECRET"), "{err}");
        assert!(err.contains("sources[0] (pluggy).secrets[0]"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn default_value_in_interpolation() {
        assert_eq!(
            expand("a${X:-b}c", &|_| None),
            Ok(("abc".to_string(), true))
        );
        assert_eq!(
            expand("${X}", &|_| Some("v".into())),
            Ok(("v".to_string(), false))
        );
        assert_eq!(
            expand("${X:-d}", &|_| Some("v".into())),
            Ok(("v".to_string(), false))
        );
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases: &[(&str, &str)] = &[
            (
                "[[sources]]\nname='a'\nkind='nope'\nsecrets=['x']",
                "sources[0] (a).kind: unknown kind \"nope\"",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources]]\nname='a'\nkind='github'\nsecrets=['y']",
                "sources[1].name: duplicate source name",
            ),
            ("[[sources]]\nname='a'\nkind='github'\nsecrets=['']", "sources[0] (a).secrets[0]: is empty"),
            ("[[sources]]\nname='a'\nkind='github'", "sources[0] (a).secrets: at least one"),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources.destinations]]\nname='d'\nurl='ftp://x'",
                "sources[0] (a).destinations[0].url",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\ntolerance_second=3",
                "unknown field `tolerance_second`",
            ),
            (
                "[[sources]]\nname='a'\nkind='standard-webhooks'\nsecrets=['nope']",
                "sources[0] (a)",
            ),
            ("[[sources]]\nname='a'\nkind='hmac'\nsecrets=['x']", "signature_header"),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\nidempotency_key=['eventId']",
                "sources[0] (a).idempotency_key[0]",
            ),
            ("[server]\nbind='nope'", "server.bind"),
        ];
        for (text, expected) in cases {
            let err = load(text, &[]).expect_err(text).to_string();
            assert!(
                err.contains(expected),
                "{text:?} gave {err:?}, wanted {expected:?}"
            );
            assert!(!err.contains('\n'), "multi-line error: {err:?}");
        }
    }

    #[test]
    fn secrets_from_defaults_are_reported_and_others_not() {
        let text = "[[sources]]\nname='a'\nkind='github'\nsecrets=['${A_SECRET:-dev}']\n\
                    [[sources.destinations]]\nname='d'\nurl='${URL:-http://x}'";
        let s = load(text, &[]).expect("loads");
        assert_eq!(s.defaulted_secrets, ["sources[0] (a).secrets[0]"]);
        let s = load(text, &[("A_SECRET", "real")]).expect("loads");
        assert!(s.defaulted_secrets.is_empty());
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = load(PLUGGY, &[("PLUGGY_SECRET", "topsecret")]).expect("loads");
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
