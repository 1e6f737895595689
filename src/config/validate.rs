//! Validation: the raw file plus the environment become [`Settings`], or one line naming the
//! field at fault. Sources are checked in `source.rs`; kind-specific checks are left to
//! `verify::build`, so that a scheme's rules live in its own file.

use std::collections::HashSet;

use super::notifications::validate_notifications;
use super::raw::RawConfig;
use super::source::validate_source;
use super::*;

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
        let topology = super::topology::redis_topology(&raw.redis, env)?;
        let database_url = env("DATABASE_URL")
            .or(raw.database.url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::at(
                "database.url",
                "must start with postgres:// or postgresql://",
            ));
        }
        let retention_days = raw.audit.retention_days.unwrap_or(30).max(1);
        let payload_retention_days = raw.audit.payload_retention_days;
        if payload_retention_days.is_some_and(|p| p == 0 || p > retention_days) {
            return Err(ConfigError::at(
                "audit.payload_retention_days",
                format!("must be 1 to audit.retention_days ({retention_days})"),
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
        let replica_ack_timeout_ms = raw.redis.replica_ack_timeout_ms.unwrap_or(500);
        let replica_ack_set = raw.redis.replica_ack_timeout_ms.is_some();
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
            if s.name == NOTIFICATIONS_SOURCE {
                return Err(ConfigError::at(
                    format!("{field}.name"),
                    format!("{NOTIFICATIONS_SOURCE:?} is the built-in source of [[notifications]]"),
                ));
            }
            sources.push(validate_source(s, &field)?);
        }
        let (notifications, notify) = validate_notifications(raw.notifications)?;
        sources.extend(notifications);

        let settings = Settings {
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
                topology,
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
                max_backlog: raw.audit.max_backlog.unwrap_or(1_000_000).max(1_000),
                // A lease is renewed about once per round (a pause and a write): it must
                // outlive several, or it lapses between renewals and partitions bounce.
                claim_idle_ms: raw
                    .audit
                    .claim_idle_ms
                    .unwrap_or(10_000)
                    .max(100)
                    .max(6 * raw.audit.flush_interval_ms.unwrap_or(100).max(10)),
                nice: raw.audit.nice.unwrap_or(10).clamp(0, 19),
                yield_ms: raw.audit.yield_ms.unwrap_or(5_000).min(60_000),
                retention_days,
                payload_retention_days,
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
            notify,
            defaulted_secrets: Vec::new(),
        };
        // The WAIT runs inside the bound a batch waits for Redis (shorter than
        // enqueue_timeout_ms with the spool on), so it must end before it. Checked only when it
        // can matter (a WAIT happens, or the value is set), so that a short enqueue_timeout_ms
        // alone stays valid.
        let bound = settings.redis_bound().as_millis() as u64;
        if (min_replicas_acked > 0 || replica_ack_set)
            && !(1..bound).contains(&replica_ack_timeout_ms)
        {
            let what = if settings.spool.enabled {
                "the Redis bound with the spool on, redis.enqueue_timeout_ms capped at 3500"
            } else {
                "redis.enqueue_timeout_ms"
            };
            return Err(ConfigError::at(
                "redis.replica_ack_timeout_ms",
                format!("must be at least 1 and below {what} ({bound})"),
            ));
        }
        Ok(settings)
    }
}

fn default_replica_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{host}-{}", std::process::id())
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
                "redis.replica_ack_timeout_ms: must be at least 1 and below the Redis bound with the spool on, redis.enqueue_timeout_ms capped at 3500 (2000)",
            ),
            (
                "[redis]\nmin_replicas_acked=1\nenqueue_timeout_ms=400\n[spool]\nenabled=false",
                "redis.replica_ack_timeout_ms: must be at least 1 and below redis.enqueue_timeout_ms (400)",
            ),
            (
                "[redis]\nenqueue_timeout_ms=4500\nreplica_ack_timeout_ms=4000",
                "redis.replica_ack_timeout_ms: must be at least 1 and below the Redis bound with the spool on, redis.enqueue_timeout_ms capped at 3500 (3500)",
            ),
            ("[redis]\nreplica_ack_timeout_ms=0", "redis.replica_ack_timeout_ms"),
            ("[redis]\nmin_replicas_acked=-1", "redis.min_replicas_acked"),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\nmax_body_bytes=33554433",
                "sources[0] (a).max_body_bytes: must be at most 33554432 (32 MiB)",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources.destinations]]\nname='d'\nurl='http://x'\nfilter={ action = 'opened' }",
                "sources[0] (a).destinations[0].filter: \"action\" is not a JSON pointer",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources.destinations]]\nname='d'\nurl='http://x'\nevent_types=['']",
                "sources[0] (a).destinations[0].event_types: event_types has an empty pattern",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources.destinations]]\nname='d'\nurl='http://x'\nforward_headers=['X Bad']",
                "sources[0] (a).destinations[0].forward_headers[0]",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources.destinations]]\nname='d'\nurl='http://x'\non_dead='block'",
                "sources[0] (a).destinations[0].on_dead: is set without ordering_key",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources.destinations]]\nname='d'\nurl='http://x'\nordering_key='/id'\non_dead='later'",
                "sources[0] (a).destinations[0].on_dead: \"later\" must be",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources.destinations]]\nname='d'\nurl='http://x'\nordering_key='id'",
                "sources[0] (a).destinations[0].ordering_key",
            ),
            (
                "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\npartitions=2\n[[sources.destinations]]\nname='d'\nurl='http://x'\nordering_key='/id'",
                "ordering_key: needs the source's partitions = 1",
            ),
            (
                "[[notifications]]\nkind='email'\nurl='http://x'",
                "notifications[0].kind: \"email\" must be \"slack\" or \"webhook\"",
            ),
            (
                "[[notifications]]\nkind='slack'\nurl='http://x'\nevents=['dead']",
                "notifications[0].events: unknown event \"dead\"",
            ),
            (
                "[[notifications]]\nkind='slack'\nurl='http://x'\ndigest_seconds=0",
                "notifications[0].digest_seconds: must be at least 1",
            ),
            ("[[notifications]]\nkind='slack'\nurl='ftp://x'", "notifications[0].url"),
            (
                "[[sources]]\nname='hookgate-notifications'\nkind='github'\nsecrets=['x']",
                "sources[0].name: \"hookgate-notifications\" is the built-in source",
            ),
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
    fn notifications_become_destinations_of_the_built_in_source() {
        let s = load(
            "[[notifications]]\nkind='slack'\nurl='http://s'\nevents=['circuit_opened', 'redis']\n\
             [[notifications]]\nname='ops'\nkind='webhook'\nurl='http://w'\ndigest_seconds=30",
            &[],
        )
        .expect("loads");
        let n = s
            .source(crate::config::NOTIFICATIONS_SOURCE)
            .expect("built in");
        assert!(n.internal);
        assert_eq!(n.destinations[0].name, "slack-0");
        assert!(n.destinations[0].filter.wants("slack:circuit_opened", None));
        assert!(n.destinations[0].filter.wants("slack:redis_down", None));
        assert!(!n.destinations[0].filter.wants("slack:dead_letters", None));
        assert!(!n.destinations[0]
            .filter
            .wants("webhook:circuit_opened", None));
        assert!(n.destinations[1].filter.wants("webhook:dead_letters", None));
        assert_eq!(s.notify.digest_seconds, 30);
        assert_eq!(s.notify.kinds.len(), 2);
        assert!(load("", &[]).expect("loads").sources.is_empty());
    }

    #[test]
    fn routing_settings_are_read() {
        let s = load(
            "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n[[sources.destinations]]\n\
             name='d'\nurl='http://x'\nevent_types=['pull_*']\n\
             filter={ '/action' = ['opened', 'reopened'], '/account/id' = 3 }\n\
             forward_headers=['X-GitHub-*']\nordering_key='header:X-Item'\non_dead='block'\n\
             [[sources.destinations]]\nname='e'\nurl='http://y'",
            &[],
        )
        .expect("loads");
        let d = &s.sources[0].destinations[0];
        let opened = serde_json::json!({"action": "opened", "account": {"id": 3}});
        assert!(d.filter.wants("pull_request", Some(&opened)));
        assert!(!d.filter.wants("push", Some(&opened)));
        assert_eq!(
            d.forward_headers.as_deref(),
            Some(&["X-GitHub-*".to_string()][..])
        );
        let ordering = d.ordering.as_ref().expect("ordered");
        assert_eq!(ordering.key.to_string(), "header:x-item");
        assert_eq!(ordering.on_dead, crate::routing::OnDead::Block);
        let plain = &s.sources[0].destinations[1];
        assert!(plain.filter.wants_everything());
        assert!(plain.forward_headers.is_none() && plain.ordering.is_none());
    }
}
