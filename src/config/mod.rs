//! Configuration: a TOML file, environment overrides and `${VAR}` interpolation, validated once
//! at start-up so that every mistake stops the process with one line naming the field.

use std::fmt;
use std::path::{Path, PathBuf};

mod interpolate;
mod notifications;
mod raw;
mod secret;
mod settings;
mod source;
mod topology;
mod validate;

pub use interpolate::expand;
pub use notifications::{NotifyKind, NotifySettings, NOTIFICATIONS_SOURCE, NOTIFY_EVENTS};
pub use secret::{is_placeholder, RedactedUrl, Secret};
pub use settings::{
    AuditSettings, CircuitPolicy, DatabaseSettings, DeliverySettings, DestinationConfig,
    RedisSettings, RetryPolicy, ServerSettings, Settings, SourceConfig, SpoolSettings,
};
pub use topology::RedisTopology;

/// Default Redis URL when neither the file nor `REDIS_URL` sets one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default PostgreSQL URL when neither the file nor `DATABASE_URL` sets one.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/hookgate";
/// Default listen address when neither the file nor `HOOKGATE_BIND`/`PORT` sets one.
pub const DEFAULT_BIND: &str = "0.0.0.0:8080";
/// Most streams one source may be spread over.
pub const MAX_PARTITIONS: u16 = 64;
/// Default spool folder when neither the file nor `HOOKGATE_SPOOL_DIR` sets one.
pub const DEFAULT_SPOOL_DIR: &str = "./hookgate-spool";
/// Default bound of the spool: 1 GiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;

/// A configuration mistake, phrased as one line that names the field at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn at(field: impl fmt::Display, message: impl fmt::Display) -> Self {
        ConfigError(format!("{field}: {message}"))
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

/// Reads the environment; injected so that loading is testable without touching the process.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, as an [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Time a webhook may take to be spooled once Redis gave up on it: the sender's wait is the
/// Redis bound plus this.
pub const SPOOL_MARGIN: std::time::Duration = std::time::Duration::from_millis(1000);

impl Settings {
    /// How long a batch may wait for Redis before it goes to the spool: the configured bound,
    /// less the spool's margin when that would take the sender past 4.5 s.
    pub fn redis_bound(&self) -> std::time::Duration {
        let bound = std::time::Duration::from_millis(self.redis.enqueue_timeout_ms);
        if self.spool.enabled {
            bound.min(std::time::Duration::from_millis(4_500) - SPOOL_MARGIN)
        } else {
            bound
        }
    }

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
            interpolate::interpolate(item, key, env, &mut defaulted)?;
        }
        let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Value::Table(value))
            .map_err(|e| ConfigError::at(e.path(), e.inner().to_string().replace('\n', " ")))?;
        let mut settings = Settings::validate(raw, origin, env)?;
        let mut warned: Vec<String> = defaulted
            .into_iter()
            .filter(|path| {
                let field = path.rsplit('.').next().unwrap_or_default();
                field.starts_with("secrets[")
                    || field == "secret"
                    || field == "path_token"
                    || path == "admin.token"
            })
            .collect();
        let admin_field = match env("HOOKGATE_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
            Some(_) => "HOOKGATE_ADMIN_TOKEN",
            None => "admin.token",
        };
        for (field, secret) in settings.secret_fields(admin_field) {
            // Callers print each entry as a field that took a shipped default, which a
            // placeholder is too; the suffix says which case this is.
            if is_placeholder(secret.expose()) && !warned.contains(&field) {
                warned.push(format!("{field} (a known placeholder value)"));
            }
        }
        settings.defaulted_secrets = warned;
        Ok(settings)
    }

    /// Every secret with the field it came from, named as in error messages.
    fn secret_fields(&self, admin_field: &str) -> Vec<(String, &Secret)> {
        let mut fields: Vec<(String, &Secret)> = Vec::new();
        fields.extend(
            self.admin_token
                .iter()
                .map(|t| (admin_field.to_string(), t)),
        );
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("sources[{i}] ({})", s.name);
            for (j, secret) in s.secrets.iter().enumerate() {
                fields.push((format!("{at}.secrets[{j}]"), secret));
            }
            fields.extend(s.path_token.iter().map(|t| (format!("{at}.path_token"), t)));
            for (j, d) in s.destinations.iter().enumerate() {
                let dest = format!("{at}.destinations[{j}] ({}).secret", d.name);
                fields.extend(d.secret.iter().map(|t| (dest.clone(), t)));
            }
        }
        fields
    }

    /// The source with this name.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

/// Loads an inline document with only `pairs` in the environment (the tests' loader).
#[cfg(test)]
fn load_inline(
    text: &str,
    pairs: &'static [(&'static str, &'static str)],
) -> Result<Settings, ConfigError> {
    let env = env_of(pairs);
    Settings::from_toml(text, ConfigOrigin::Inline, &env)
}

#[cfg(test)]
const PLUGGY: &str = r#"
[[sources]]
name = "pluggy"
kind = "pluggy"
secrets = ["${PLUGGY_SECRET}"]
[[sources.destinations]]
name = "app"
url = "http://app:9000/hooks/pluggy"
"#;

#[cfg(test)]
mod tests {
    use super::load_inline as load;
    use super::*;

    #[test]
    fn defaults_without_file() {
        let s = load("", &[]).expect("defaults load");
        assert_eq!(
            s.redis.topology,
            RedisTopology::Single(DEFAULT_REDIS_URL.into())
        );
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
        assert_eq!(
            s.redis.topology,
            RedisTopology::Single("redis://r:6379".into())
        );
        assert_eq!(s.server.bind, "0.0.0.0:9090");
        assert_eq!(s.sources[0].secrets[0].expose(), "s3cret");
        assert_eq!(s.admin_token.as_ref().map(Secret::expose), Some("tok"));
        assert_eq!(s.sources[0].destinations[0].timeout_ms, 5000);
    }

    #[test]
    fn spool_and_replica_acks_default_and_take_the_environment() {
        let s = load("", &[]).expect("defaults load");
        assert!(s.spool.enabled);
        assert_eq!(s.spool.dir, PathBuf::from(DEFAULT_SPOOL_DIR));
        assert_eq!(s.spool.max_bytes, 1_073_741_824);
        assert_eq!(s.redis.min_replicas_acked, 0);
        assert_eq!(s.redis.replica_ack_timeout_ms, 500);

        let text = "[spool]\nenabled = false\ndir = '/var/spool/a'\nmax_bytes = 4096\n\
                    [redis]\nmin_replicas_acked = 1\nreplica_ack_timeout_ms = 300";
        let s = load(text, &[]).expect("loads");
        assert!(!s.spool.enabled);
        assert_eq!(s.spool.dir, PathBuf::from("/var/spool/a"));
        assert_eq!(s.spool.max_bytes, 4096);
        assert_eq!(s.redis.min_replicas_acked, 1);
        assert_eq!(s.redis.replica_ack_timeout_ms, 300);

        let env = &[
            ("HOOKGATE_SPOOL_DIR", "/data/spool"),
            ("HOOKGATE_MIN_REPLICAS_ACKED", "2"),
        ];
        let s = load(text, env).expect("loads");
        assert_eq!(s.spool.dir, PathBuf::from("/data/spool"));
        assert_eq!(s.redis.min_replicas_acked, 2);
        // Empty variables (as an .env file leaves them) are unset, not overrides.
        let s = load(
            text,
            &[
                ("HOOKGATE_SPOOL_DIR", ""),
                ("HOOKGATE_MIN_REPLICAS_ACKED", ""),
            ],
        )
        .expect("loads");
        assert_eq!(s.spool.dir, PathBuf::from("/var/spool/a"));
        assert_eq!(s.redis.min_replicas_acked, 1);

        let err = load("", &[("HOOKGATE_MIN_REPLICAS_ACKED", "one")])
            .expect_err("not a number")
            .to_string();
        assert_eq!(
            err,
            "HOOKGATE_MIN_REPLICAS_ACKED: \"one\" is not a number of replicas"
        );
        // A short enqueue bound alone stays valid: without WAIT the default ack timeout is unused.
        let s = load("[redis]\nenqueue_timeout_ms = 100", &[]).expect("loads");
        assert_eq!(s.redis.enqueue_timeout_ms, 100);
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

    #[test]
    fn connection_passwords_are_not_printed() {
        let s = load(
            "",
            &[
                ("REDIS_URL", "redis://:redispass@r:6379"),
                (
                    "DATABASE_URL",
                    "postgres://hookgate:pgpass@db:5432/hookgate",
                ),
            ],
        )
        .expect("loads");
        let printed = format!("{s:?}");
        assert!(!printed.contains("redispass"), "{printed}");
        assert!(!printed.contains("pgpass"), "{printed}");
        assert!(
            printed.contains("postgres://hookgate:***@db:5432/hookgate"),
            "{printed}"
        );
        assert!(printed.contains("redis://:***@r:6379"), "{printed}");
        // The connections themselves still get the password.
        assert_eq!(
            s.database.url,
            "postgres://hookgate:pgpass@db:5432/hookgate"
        );
    }

    #[test]
    fn a_placeholder_admin_token_is_warned_like_a_defaulted_secret() {
        let s = load("", &[("HOOKGATE_ADMIN_TOKEN", "change-me-too")]).expect("loads");
        assert_eq!(
            s.defaulted_secrets,
            ["HOOKGATE_ADMIN_TOKEN (a known placeholder value)"]
        );
        let s = load("[admin]\ntoken = 'CHANGE_ME'", &[]).expect("loads");
        assert_eq!(
            s.defaulted_secrets,
            ["admin.token (a known placeholder value)"]
        );
        // A `${VAR:-default}` fallback is named once, as before.
        let s = load("[admin]\ntoken = '${T:-change-me}'", &[]).expect("loads");
        assert_eq!(s.defaulted_secrets, ["admin.token"]);
        let s = load("", &[("HOOKGATE_ADMIN_TOKEN", "9c1f4e0b7a2d")]).expect("loads");
        assert!(s.defaulted_secrets.is_empty());
        // .env.example's webhook secrets are placeholders too.
        let s = load(PLUGGY, &[("PLUGGY_SECRET", "change-me")]).expect("loads");
        assert_eq!(
            s.defaulted_secrets,
            ["sources[0] (pluggy).secrets[0] (a known placeholder value)"]
        );
    }

    #[test]
    fn an_empty_admin_token_variable_leaves_the_file_token() {
        let s = load(
            "[admin]\ntoken = 'from-file-7f3a'",
            &[("HOOKGATE_ADMIN_TOKEN", "")],
        )
        .expect("loads");
        assert_eq!(
            s.admin_token.as_ref().map(Secret::expose),
            Some("from-file-7f3a")
        );
    }

    #[test]
    fn env_example_ships_no_usable_admin_token() {
        let example = include_str!("../../.env.example");
        let token = example
            .lines()
            .find_map(|l| l.trim().strip_prefix("HOOKGATE_ADMIN_TOKEN="))
            .expect(".env.example lists HOOKGATE_ADMIN_TOKEN");
        assert!(token.is_empty() || is_placeholder(token), "{token:?}");
    }
}
