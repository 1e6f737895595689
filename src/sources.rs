//! The running set of sources by name. A configuration reload (SIGHUP) replaces it whole, so
//! each request, delivery or audit round sees one generation of it; the generation counts
//! the configurations this process has run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Settings, SourceConfig};
use crate::partition_layout::Layout;
use crate::source::Source;

/// Sources by name.
type Map = HashMap<String, Arc<Source>>;

/// Every configured source by name, shared by every part of the process (clones share it).
#[derive(Clone)]
pub struct Sources(Arc<Live>);

struct Live {
    map: ArcSwap<Map>,
    /// Sources a reload removed: no webhook is taken for them any more, but what they left
    /// in a spool or a stream is still moved into Redis and written to the audit trail.
    retired: ArcSwap<Map>,
    /// 1 for the configuration the process started with, one more per reload applied.
    generation: AtomicU64,
}

impl Default for Sources {
    fn default() -> Self {
        Sources::of(Map::new())
    }
}

impl Sources {
    fn of(map: Map) -> Self {
        Sources(Arc::new(Live {
            map: ArcSwap::from_pointee(map),
            retired: ArcSwap::from_pointee(Map::new()),
            generation: AtomicU64::new(1),
        }))
    }

    /// Builds every source of the settings, each routing as its entry of `layouts` says
    /// (its own setting when it has none).
    pub fn from_settings(
        settings: &Settings,
        layouts: &[(String, Layout)],
    ) -> Result<Self, String> {
        let mut map = Map::new();
        for config in &settings.sources {
            let layout = layouts
                .iter()
                .find(|(name, _)| *name == config.name)
                .map_or(Layout::configured(config.partitions), |(_, l)| *l);
            map.insert(
                config.name.clone(),
                build(config, &settings.redis.key_prefix, layout)?,
            );
        }
        Ok(Sources::of(map))
    }

    /// The source with this name.
    pub fn get(&self, name: &str) -> Option<Arc<Source>> {
        self.0.map.load().get(name).cloned()
    }

    /// The source with this name, or the one a reload removed: for what it left behind.
    pub fn get_any(&self, name: &str) -> Option<Arc<Source>> {
        self.get(name)
            .or_else(|| self.0.retired.load().get(name).cloned())
    }

    /// Every source, in no particular order (those of one generation).
    pub fn iter(&self) -> std::vec::IntoIter<Arc<Source>> {
        self.0
            .map
            .load()
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Every source, sorted by name (as the admin API and the figures list them).
    pub fn sorted(&self) -> Vec<Arc<Source>> {
        let mut all: Vec<_> = self.iter().collect();
        all.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        all
    }

    /// The configuration generation running now.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Relaxed)
    }

    /// Runs `sources` from now on; returns the new generation.
    pub fn replace(&self, sources: Vec<Arc<Source>>) -> u64 {
        let map: Map = sources
            .into_iter()
            .map(|s| (s.config.name.clone(), s))
            .collect();
        let mut retired = (**self.0.retired.load()).clone();
        for (name, source) in self.0.map.load().iter() {
            if !map.contains_key(name) {
                retired.insert(name.clone(), source.clone());
            }
        }
        retired.retain(|name, _| !map.contains_key(name));
        self.0.retired.store(Arc::new(retired));
        self.0.map.store(Arc::new(map));
        self.0.generation.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The run-time source of `config`, routing as `layout` says.
pub fn build(
    config: &SourceConfig,
    key_prefix: &str,
    layout: Layout,
) -> Result<Arc<Source>, String> {
    Source::new(config.clone(), key_prefix, layout)
        .map(Arc::new)
        .map_err(|e| format!("source {}: {e}", config.name))
}
