//! Which Redis the gateway talks to: one server, a Sentinel-managed master, or a Cluster.

use std::fmt;

use super::raw::RawRedis;
use super::{ConfigError, Env, RedactedUrl, DEFAULT_REDIS_URL};

/// The Redis deployment, chosen by configuration; exactly one is in force.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One Redis at this URL (`REDIS_URL` / `redis.url`).
    Single(String),
    /// The master named `master`, found (and followed across failovers) through these
    /// sentinels (`REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`). The sentinel URLs' user and
    /// password are used for the sentinels and the master alike.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// A Redis Cluster reached through these seed nodes (`REDIS_CLUSTER_NODES`).
    Cluster(Vec<String>),
}

impl RedisTopology {
    /// The topology's name, as `/ready`, `/metrics` and `check-config` show it.
    pub fn kind(&self) -> &'static str {
        match self {
            RedisTopology::Single(_) => "single",
            RedisTopology::Sentinel { .. } => "sentinel",
            RedisTopology::Cluster(_) => "cluster",
        }
    }
}

fn urls(list: &[String]) -> String {
    list.iter()
        .map(|u| RedactedUrl(u).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// Passwords never reach a log through `{topology}` or `{topology:?}`.
impl fmt::Display for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTopology::Single(url) => write!(f, "{}", RedactedUrl(url)),
            RedisTopology::Sentinel { sentinels, master } => {
                write!(f, "master {master:?} via {}", urls(sentinels))
            }
            RedisTopology::Cluster(nodes) => write!(f, "seed nodes {}", urls(nodes)),
        }
    }
}

impl fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({self})", self.kind())
    }
}

/// A comma-separated list from the environment variable `var` (which wins), or the file's
/// list at `field`; empty entries dropped. Also says where it came from, for errors.
fn list(
    env: Env<'_>,
    var: &'static str,
    field: &'static str,
    file: Option<Vec<String>>,
) -> Option<(&'static str, Vec<String>)> {
    let (origin, items): (&'static str, Vec<String>) =
        match env(var).filter(|v| !v.trim().is_empty()) {
            Some(v) => (var, v.split(',').map(|s| s.trim().to_string()).collect()),
            None => (field, file?),
        };
    let items: Vec<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
    (!items.is_empty()).then_some((origin, items))
}

fn check_scheme(field: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(())
    } else {
        Err(ConfigError::at(
            field,
            format!("{} must start with redis:// or rediss://", RedactedUrl(url)),
        ))
    }
}

/// Reads the topology from the environment (which wins) and the file; naming two is an error.
pub(super) fn redis_topology(raw: &RawRedis, env: Env<'_>) -> Result<RedisTopology, ConfigError> {
    let url = env("REDIS_URL")
        .filter(|u| !u.is_empty())
        .map(|u| ("REDIS_URL", u))
        .or_else(|| raw.url.clone().map(|u| ("redis.url", u)));
    let sentinels = list(
        env,
        "REDIS_SENTINELS",
        "redis.sentinels",
        raw.sentinels.clone(),
    );
    let cluster = list(
        env,
        "REDIS_CLUSTER_NODES",
        "redis.cluster_nodes",
        raw.cluster_nodes.clone(),
    );
    let named: Vec<&str> = [
        url.as_ref().map(|(f, _)| *f),
        sentinels.as_ref().map(|(f, _)| *f),
        cluster.as_ref().map(|(f, _)| *f),
    ]
    .into_iter()
    .flatten()
    .collect();
    if named.len() > 1 {
        return Err(ConfigError::at(
            "redis",
            format!(
                "{} are both set: choose one topology (single, sentinel or cluster)",
                named.join(" and ")
            ),
        ));
    }
    let master = env("REDIS_SENTINEL_MASTER")
        .filter(|m| !m.is_empty())
        .or(raw.sentinel_master.clone());
    match (url, sentinels, cluster) {
        (_, Some((field, sentinels)), _) => {
            for s in &sentinels {
                check_scheme(field, s)?;
            }
            let master = master.ok_or_else(|| {
                ConfigError::at(
                    "REDIS_SENTINEL_MASTER",
                    "is needed with sentinels: the name of the master they watch",
                )
            })?;
            Ok(RedisTopology::Sentinel { sentinels, master })
        }
        (_, None, Some((field, nodes))) => {
            for n in &nodes {
                check_scheme(field, n)?;
            }
            Ok(RedisTopology::Cluster(nodes))
        }
        (url, None, None) => {
            if master.is_some() {
                return Err(ConfigError::at(
                    "REDIS_SENTINEL_MASTER",
                    "is set without sentinels (REDIS_SENTINELS / redis.sentinels)",
                ));
            }
            let (field, url) = url.unwrap_or(("redis.url", DEFAULT_REDIS_URL.to_string()));
            check_scheme(field, &url)?;
            Ok(RedisTopology::Single(url))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(file: RawRedis, vars: &[(&str, &str)]) -> Result<RedisTopology, String> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        redis_topology(&file, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn each_topology_is_read_from_the_environment_or_the_file() {
        assert_eq!(
            topology(RawRedis::default(), &[]).unwrap(),
            RedisTopology::Single(DEFAULT_REDIS_URL.into())
        );
        assert_eq!(
            topology(
                RawRedis::default(),
                &[
                    ("REDIS_SENTINELS", "redis://a:1, redis://b:2,"),
                    ("REDIS_SENTINEL_MASTER", "m")
                ]
            )
            .unwrap(),
            RedisTopology::Sentinel {
                sentinels: vec!["redis://a:1".into(), "redis://b:2".into()],
                master: "m".into()
            }
        );
        let file = RawRedis {
            cluster_nodes: Some(vec!["redis://c:1".into()]),
            ..RawRedis::default()
        };
        assert_eq!(
            topology(file, &[]).unwrap(),
            RedisTopology::Cluster(vec!["redis://c:1".into()])
        );
    }

    #[test]
    fn two_topologies_or_a_half_sentinel_setting_are_refused_by_name() {
        let err = topology(
            RawRedis::default(),
            &[
                ("REDIS_URL", "redis://a:1"),
                ("REDIS_CLUSTER_NODES", "redis://c:1"),
            ],
        )
        .unwrap_err();
        assert!(err.contains("REDIS_URL and REDIS_CLUSTER_NODES"), "{err}");
        let file = RawRedis {
            sentinels: Some(vec!["redis://s:1".into()]),
            ..RawRedis::default()
        };
        let err = topology(file, &[]).unwrap_err();
        assert!(err.starts_with("REDIS_SENTINEL_MASTER"), "{err}");
        let err = topology(RawRedis::default(), &[("REDIS_SENTINEL_MASTER", "m")]).unwrap_err();
        assert!(err.contains("without sentinels"), "{err}");
        let err = topology(RawRedis::default(), &[("REDIS_CLUSTER_NODES", "c:1")]).unwrap_err();
        assert!(err.starts_with("REDIS_CLUSTER_NODES"), "{err}");
    }

    #[test]
    fn passwords_never_show() {
        let t = RedisTopology::Cluster(vec!["redis://:pw@c:1".into()]);
        assert!(!format!("{t} {t:?}").contains("pw"));
        let t = RedisTopology::Sentinel {
            sentinels: vec!["redis://u:pw@s:1".into()],
            master: "m".into(),
        };
        assert!(!format!("{t} {t:?}").contains("pw"));
    }
}
