//! A configured source at run time: its settings, its verifier and its Redis keys.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use crate::config::{Settings, SourceConfig};
use crate::idempotency::{body_hash, from_selectors};
use crate::verify::{self, Verifier};

/// The Redis keys of one source. All share the `{source}` hash tag so that a Lua script may
/// touch several of them on Redis Cluster too.
#[derive(Debug, Clone)]
pub struct SourceKeys {
    /// The stream of accepted events awaiting delivery.
    pub stream: String,
    /// Prefix of de-duplication keys; the idempotency key is appended.
    pub dedup_prefix: String,
    /// The dead-letter stream of every destination of the source.
    pub dead: String,
    /// Written just before `WAIT`, so that the replicas' acknowledgement covers every write
    /// before it (in the source's slot, as the writes it vouches for).
    pub replication_marker: String,
    base: String,
}

/// The Redis keys of one destination of a source.
#[derive(Debug, Clone)]
pub struct DestinationKeys {
    /// The consumer group of this destination, on the source stream and its retry stream.
    pub group: String,
    /// Retries due now, moved here from `retry_schedule`; read through `group`.
    pub retry_stream: String,
    /// Parked deliveries by due time (ms): members are tokens of `parked_prefix` hashes.
    pub retry_schedule: String,
    /// Prefix of the hashes holding parked deliveries.
    pub parked_prefix: String,
    /// The shared circuit breaker state.
    pub circuit: String,
    /// Count of deliveries that reached the destination.
    pub delivered: String,
    /// Count of deliveries that ended in the dead-letter stream.
    pub dead: String,
    /// Fixed-window counters of the outbound rate limit.
    pub rate_prefix: String,
}

impl SourceKeys {
    /// Keys of `source` under `prefix`.
    pub fn new(prefix: &str, source: &str) -> Self {
        let base = format!("{prefix}:{{{source}}}");
        SourceKeys {
            stream: format!("{base}:stream"),
            dedup_prefix: format!("{base}:dedup:"),
            dead: format!("{base}:dead"),
            replication_marker: format!("{base}:replicated"),
            base,
        }
    }

    /// Keys of one destination.
    pub fn destination(&self, name: &str) -> DestinationKeys {
        let d = format!("{}:dest:{name}", self.base);
        DestinationKeys {
            group: format!("dest:{name}"),
            retry_stream: format!("{d}:retry"),
            retry_schedule: format!("{d}:schedule"),
            parked_prefix: format!("{d}:parked:"),
            circuit: format!("{d}:circuit"),
            delivered: format!("{d}:delivered"),
            dead: format!("{d}:dead"),
            rate_prefix: format!("{d}:rate:"),
        }
    }

    /// The de-duplication key of an idempotency key; long keys are hashed to bound memory.
    pub fn dedup(&self, key: &str) -> String {
        if key.len() <= 200 {
            format!("{}{key}", self.dedup_prefix)
        } else {
            format!("{}{}", self.dedup_prefix, body_hash(key.as_bytes()))
        }
    }
}

/// One source, ready to verify and key webhooks.
pub struct Source {
    pub config: SourceConfig,
    pub verifier: Box<dyn Verifier>,
    pub keys: SourceKeys,
    /// Lower-cased names of headers never stored (secrets, credentials).
    pub redacted_headers: Vec<String>,
    /// One per destination: the Dispatcher wakes the destination's worker in process when it
    /// queued an event, so an idle gateway delivers at once.
    pub wakers: Vec<Arc<tokio::sync::Notify>>,
}

impl Source {
    /// The consumer groups of its destinations on its stream, in configuration order.
    pub fn groups(&self) -> Vec<String> {
        self.config
            .destinations
            .iter()
            .map(|d| self.keys.destination(&d.name).group)
            .collect()
    }

    /// Builds the run-time source from validated config.
    pub fn new(config: SourceConfig, key_prefix: &str) -> Result<Self, String> {
        let verifier = verify::build(&config)?;
        let mut redacted_headers: Vec<String> = ["authorization", "cookie", "proxy-authorization"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        redacted_headers.extend(verifier.secret_headers().iter().map(|h| h.to_string()));
        Ok(Source {
            keys: SourceKeys::new(key_prefix, &config.name),
            wakers: config
                .destinations
                .iter()
                .map(|_| Arc::new(tokio::sync::Notify::new()))
                .collect(),
            config,
            verifier,
            redacted_headers,
        })
    }

    /// Wakes every destination worker of the source.
    pub fn wake(&self) {
        for w in &self.wakers {
            w.notify_one();
        }
    }

    /// Whether the body must parse as JSON for this source.
    pub fn needs_json(&self) -> bool {
        self.verifier.needs_json()
            || self
                .config
                .idempotency_key
                .as_ref()
                .is_some_and(|sels| sels.iter().any(|s| s.needs_json()))
    }

    /// The idempotency key: the configured selectors, else the kind's default, else a body hash.
    pub fn idempotency_key(
        &self,
        headers: &HeaderMap,
        json: Option<&Value>,
        body: &[u8],
    ) -> String {
        let key = match &self.config.idempotency_key {
            Some(selectors) => from_selectors(selectors, headers, json),
            None => self.verifier.default_key(headers, json, body),
        };
        key.unwrap_or_else(|| body_hash(body))
    }

    /// The event type: the configured selector, else the kind's default.
    pub fn event_type(&self, headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        match &self.config.event_type {
            Some(sel) => sel.select(headers, json),
            None => self.verifier.event_type(headers, json),
        }
    }
}

/// All configured sources by name.
#[derive(Clone, Default)]
pub struct Sources(Arc<HashMap<String, Arc<Source>>>);

impl Sources {
    /// Builds every source of the settings.
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let mut map = HashMap::new();
        for config in &settings.sources {
            let source = Source::new(config.clone(), &settings.redis.key_prefix)
                .map_err(|e| format!("source {}: {e}", config.name))?;
            map.insert(config.name.clone(), Arc::new(source));
        }
        Ok(Sources(Arc::new(map)))
    }

    /// The source with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Source>> {
        self.0.get(name)
    }

    /// Every source, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.0.values()
    }
}
