//! Reloading the configuration without a restart (SIGHUP, or `hookgate reload`): the file the
//! process started from is read again; a file with any mistake is refused with the same
//! one-line error as at start-up and the running configuration is kept. Otherwise sources
//! added, removed or changed take effect: ingest sees the new set at once, the delivery of
//! a removed or changed source finishes what it has in flight and stops, and the delivery of
//! an added or changed one starts. Other sections (server, Redis, database, ...) take a
//! restart; a reload that changes them says so.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::config::{process_env, ConfigOrigin, Settings, SourceConfig};
use crate::delivery::Fleet;
use crate::partition_layout::Layout;
use crate::sources::{self, Sources};
use crate::telemetry;

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The process did not start from a file: there is nothing to read again.
    #[error("the configuration did not come from a file ({0}): nothing to reload")]
    NoFile(String),
    /// The file has a mistake (the one-line error start-up would give).
    #[error("{0}")]
    Invalid(String),
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Plan {
    /// Whether the sources are as they were.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Which sources a new configuration adds, removes or changes (in any setting, secrets
/// included), by name, sorted.
pub fn plan(running: &[SourceConfig], next: &[SourceConfig]) -> Plan {
    let find = |list: &[SourceConfig], name: &str| list.iter().position(|s| s.name == name);
    let mut p = Plan::default();
    for s in next {
        match find(running, &s.name) {
            None => p.added.push(s.name.clone()),
            Some(i) if fingerprint(&running[i]) != fingerprint(s) => p.changed.push(s.name.clone()),
            Some(_) => {}
        }
    }
    p.removed = running
        .iter()
        .filter(|s| find(next, &s.name).is_none())
        .map(|s| s.name.clone())
        .collect();
    p.added.sort();
    p.removed.sort();
    p.changed.sort();
    p
}

/// A digest of every setting of a source: its printed form (secrets redacted there) and its
/// secrets.
fn fingerprint(s: &SourceConfig) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{s:?}").hash(&mut h);
    for secret in &s.secrets {
        secret.expose().hash(&mut h);
    }
    s.path_token.as_ref().map(|t| t.expose()).hash(&mut h);
    for d in &s.destinations {
        d.secret.as_ref().map(|t| t.expose()).hash(&mut h);
    }
    h.finish()
}

/// The sections besides `[[sources]]` that differ: they take effect at the next restart.
fn restart_only_changes(running: &Settings, next: &Settings) -> Vec<&'static str> {
    // Each section's printed form (secrets redacted there: the admin token is compared apart).
    let sections = |s: &Settings| {
        [
            ("server", format!("{:?}", s.server)),
            ("redis", format!("{:?}", s.redis)),
            ("database", format!("{:?}", s.database)),
            ("audit", format!("{:?}", s.audit)),
            ("delivery", format!("{:?}", s.delivery)),
            ("spool", format!("{:?}", s.spool)),
            (
                "admin",
                format!("{:?}", s.admin_token.as_ref().map(|t| t.expose())),
            ),
        ]
    };
    sections(running)
        .into_iter()
        .zip(sections(next))
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect()
}

/// Reloads the configuration of one process; clones share it, and reloads run one at a time.
#[derive(Clone)]
pub struct Reloader(Arc<Inner>);

struct Inner {
    running: tokio::sync::Mutex<Settings>,
    sources: Sources,
    fleet: Arc<tokio::sync::Mutex<Fleet>>,
}

impl Reloader {
    /// A reloader of the process started with `settings`.
    pub fn new(
        settings: Settings,
        sources: Sources,
        fleet: Arc<tokio::sync::Mutex<Fleet>>,
    ) -> Self {
        Reloader(Arc::new(Inner {
            running: tokio::sync::Mutex::new(settings),
            sources,
            fleet,
        }))
    }

    /// Reads the file again and applies what changed in its sources; returns the plan
    /// applied and the generation now running. On error nothing changes.
    pub async fn reload(&self) -> Result<(Plan, u64), ReloadError> {
        let mut running = self.0.running.lock().await;
        let path = match &running.origin {
            ConfigOrigin::File(p) => p.clone(),
            other => return Err(ReloadError::NoFile(other.to_string())),
        };
        let next = Settings::load(Some(&path), &process_env).map_err(|e| {
            telemetry::config_reload("refused");
            ReloadError::Invalid(e.to_string())
        })?;
        let restart = restart_only_changes(&running, &next);
        if !restart.is_empty() {
            log::warn!(
                "configuration reload: {} changed; that takes effect at the next restart",
                restart.join(", ")
            );
        }
        // The partition layout is agreed by every replica at start: a new count takes a
        // restart, and is refused here rather than silently not applied.
        for (i, s) in next.sources.iter().enumerate() {
            let before = running.sources.iter().find(|r| r.name == s.name);
            if before.is_some_and(|r| r.partitions != s.partitions) {
                telemetry::config_reload("refused");
                return Err(ReloadError::Invalid(format!(
                    "sources[{i}] ({}).partitions: a new count takes a restart (the replicas agree on it at start)",
                    s.name
                )));
            }
        }
        let plan = plan(&running.sources, &next.sources);
        if plan.is_empty() {
            telemetry::config_reload("unchanged");
            return Ok((plan, self.0.sources.generation()));
        }
        // Every new source is built before anything changes: one that cannot be built
        // refuses the whole file.
        let mut fresh = Vec::new();
        for config in &next.sources {
            if plan.added.contains(&config.name) || plan.changed.contains(&config.name) {
                // A changed source keeps routing as it did (the layout is agreed in Redis at
                // start-up; a new `partitions` takes a restart).
                let layout = self
                    .0
                    .sources
                    .get(&config.name)
                    .map_or(Layout::configured(config.partitions), |s| s.layout());
                // Under the running key prefix: a new one takes a restart.
                let source = sources::build(config, &running.redis.key_prefix, layout)
                    .map_err(ReloadError::Invalid)?;
                fresh.push(source);
            }
        }
        let kept = self
            .0
            .sources
            .iter()
            .filter(|s| {
                next.sources.iter().any(|n| n.name == s.config.name)
                    && !plan.changed.contains(&s.config.name)
            })
            .collect::<Vec<_>>();
        // Ingest takes the new set at once; delivery follows source by source.
        let generation = self
            .0
            .sources
            .replace(kept.into_iter().chain(fresh.iter().cloned()).collect());
        telemetry::config_generation(generation);
        telemetry::config_reload("applied");
        let mut fleet = self.0.fleet.lock().await;
        fleet.follow(&next);
        let stopping: Vec<String> = plan.removed.iter().chain(&plan.changed).cloned().collect();
        fleet.stop(&stopping).await;
        for source in fresh {
            fleet.start(source);
        }
        // Only the sources are applied: the other sections keep what runs, so that the next
        // reload still says they differ.
        running.sources = next.sources;
        Ok((plan, generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn sources(text: &str) -> Vec<SourceConfig> {
        Settings::from_toml(text, ConfigOrigin::Inline, &|_| None)
            .expect("valid")
            .sources
    }

    const A: &str = "[[sources]]\nname='a'\nkind='github'\nsecrets=['x']\n";
    const B: &str = "[[sources]]\nname='b'\nkind='github'\nsecrets=['y']\n";

    #[test]
    fn a_plan_names_what_is_added_removed_and_changed() {
        let running = sources(&format!("{A}{B}"));
        assert!(plan(&running, &running).is_empty());
        let next = sources(&format!(
            "{A}[[sources.destinations]]\nname='d'\nurl='http://x'\n\
             [[sources]]\nname='c'\nkind='github'\nsecrets=['z']\n"
        ));
        assert_eq!(
            plan(&running, &next),
            Plan {
                added: vec!["c".into()],
                removed: vec!["b".into()],
                changed: vec!["a".into()],
            }
        );
    }

    #[test]
    fn a_new_secret_is_a_change_though_it_prints_the_same() {
        let running = sources(A);
        let mut next = running.clone();
        next[0].secrets = vec![Secret::new("rotated")];
        assert_eq!(format!("{:?}", running[0]), format!("{:?}", next[0]));
        assert_eq!(plan(&running, &next).changed, vec!["a".to_string()]);
    }

    #[test]
    fn sections_other_than_sources_are_named_for_a_restart() {
        let load =
            |t: &str| Settings::from_toml(t, ConfigOrigin::Inline, &|_| None).expect("valid");
        let running = load(A);
        assert!(restart_only_changes(&running, &load(A)).is_empty());
        let next = load(&format!("[delivery]\npoll_interval_ms = 99\n{A}"));
        assert_eq!(restart_only_changes(&running, &next), vec!["delivery"]);
    }
}
