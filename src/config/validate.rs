//! Validation: the raw file plus the environment become [`Settings`], or one line naming the
//! field at fault. Kind-specific checks are left to `verify::build`, so that a scheme's rules
//! live in its own file; this is the only place `config` reaches into `verify`.

use std::collections::HashSet;

use super::raw::{RawConfig, RawSource};
use super::*;
use crate::idempotency::Selector;
use crate::signature_kind::{Encoding, Kind};
use crate::verify;

impl Settings {
    /// Checks every field of the raw file and applies the environment overrides.
    pub(super) fn validate(
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
        let enqueue_timeout_ms = raw
            .redis
            .enqueue_timeout_ms
            .unwrap_or(2_000)
            .clamp(50, 4_500);
        let min_replicas_acked = match env("HOOKGATE_MIN_REPLICAS_ACKED").filter(|n| !n.is_empty())
        {
            Some(n) => n.trim().parse::<u32>().map_err(|_| {
                ConfigError::at(
                    "HOOKGATE_MIN_REPLICAS_ACKED",
                    format!("{n:?} is not a number of replicas"),
                )
            })?,
            None => raw.redis.min_replicas_acked.unwrap_or(0),
        };
        // The WAIT runs inside the enqueue's time bound, so it must end before it. Checked only
        // when it can matter (a WAIT happens, or the value is set), so that a short
        // enqueue_timeout_ms alone stays valid.
        let replica_ack_timeout_ms = raw.redis.replica_ack_timeout_ms.unwrap_or(500);
        if (min_replicas_acked > 0 || raw.redis.replica_ack_timeout_ms.is_some())
            && !(1..enqueue_timeout_ms).contains(&replica_ack_timeout_ms)
        {
            return Err(ConfigError::at(
                "redis.replica_ack_timeout_ms",
                format!(
                    "must be at least 1 and below redis.enqueue_timeout_ms ({enqueue_timeout_ms})"
                ),
            ));
        }
        let spool_dir = env("HOOKGATE_SPOOL_DIR")
            .filter(|d| !d.is_empty())
            .or(raw.spool.dir)
            .unwrap_or_else(|| DEFAULT_SPOOL_DIR.to_string());
        if spool_dir.trim().is_empty() {
            return Err(ConfigError::at("spool.dir", "is empty"));
        }
        let spool_max_bytes = raw.spool.max_bytes.unwrap_or(DEFAULT_SPOOL_MAX_BYTES);
        if spool_max_bytes == 0 {
            return Err(ConfigError::at("spool.max_bytes", "must be greater than 0"));
        }
        // An empty HOOKGATE_ADMIN_TOKEN (as `.env.example` ships it) is unset, not an
        // override that hides the file's token.
        let admin_token = env("HOOKGATE_ADMIN_TOKEN")
            .filter(|t| !t.is_empty())
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
                enqueue_timeout_ms,
                min_replicas_acked,
                replica_ack_timeout_ms,
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
            spool: SpoolSettings {
                enabled: raw.spool.enabled.unwrap_or(true),
                dir: PathBuf::from(spool_dir),
                max_bytes: spool_max_bytes,
            },
            admin_token: admin_token.map(Secret::new),
            sources,
            defaulted_secrets: Vec::new(),
        })
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
        .map(|e| e.parse::<Encoding>())
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

impl<'a> From<&'a SourceConfig> for verify::Spec<'a> {
    fn from(source: &'a SourceConfig) -> Self {
        verify::Spec {
            kind: source.kind,
            secrets: source.secrets.iter().map(Secret::expose).collect(),
            tolerance_seconds: source.tolerance_seconds,
            signature_header: source.signature_header.as_deref(),
            signature_prefix: source.signature_prefix.as_deref(),
            signature_encoding: source.signature_encoding,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::load_inline as load;

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
            ("[spool]\nmax_bytes=0", "spool.max_bytes: must be greater than 0"),
            ("[spool]\ndir=''", "spool.dir: is empty"),
            ("[spool]\nmax_byte=1", "unknown field `max_byte`"),
            (
                "[redis]\nreplica_ack_timeout_ms=2000",
                "redis.replica_ack_timeout_ms: must be at least 1 and below redis.enqueue_timeout_ms (2000)",
            ),
            (
                "[redis]\nmin_replicas_acked=1\nenqueue_timeout_ms=400",
                "redis.replica_ack_timeout_ms: must be at least 1 and below redis.enqueue_timeout_ms (400)",
            ),
            ("[redis]\nreplica_ack_timeout_ms=0", "redis.replica_ack_timeout_ms"),
            ("[redis]\nmin_replicas_acked=-1", "redis.min_replicas_acked"),
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
}
