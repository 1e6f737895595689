//! `[[notifications]]`: where hookgate tells operators what happened. Each entry becomes a
//! destination of the built-in source [`NOTIFICATIONS_SOURCE`], so notifications travel like
//! any webhook (retries, dead letters, the audit trail, Standard Webhooks signatures).

use super::raw::{RawNotification, RawSource};
use super::*;
use crate::routing::EventFilter;
use crate::signature_kind::Kind;

/// The built-in source of notifications (a name no configured source may take).
pub const NOTIFICATIONS_SOURCE: &str = "hookgate-notifications";

/// What a notification may be about, as `events` names it.
pub const NOTIFY_EVENTS: [&str; 4] = ["circuit_opened", "circuit_closed", "dead_letters", "redis"];

/// The shape of a notification's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    /// `{"text": ...}`, as Slack's incoming webhooks take it.
    Slack,
    /// A JSON object with the event, the source, the destination and the details.
    Webhook,
}

impl NotifyKind {
    /// The name in the configuration, and the prefix of the notification's event type.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Slack => "slack",
            NotifyKind::Webhook => "webhook",
        }
    }
}

/// What the notifier needs beyond the built-in source: which bodies to build, and the
/// dead-letter digest's window.
#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    /// The kinds some notification has (a body is built per kind).
    pub kinds: Vec<NotifyKind>,
    /// At most one dead-letter digest per destination per this many seconds (the shortest of
    /// the notifications that want `dead_letters`).
    pub digest_seconds: u64,
}

impl NotifySettings {
    /// Whether any notification is configured.
    pub fn enabled(&self) -> bool {
        !self.kinds.is_empty()
    }
}

/// Checks `[[notifications]]`; returns the built-in source delivering them (None without
/// any) and the notifier's settings.
pub(super) fn validate_notifications(
    raw: Vec<RawNotification>,
) -> Result<(Option<SourceConfig>, NotifySettings), ConfigError> {
    if raw.is_empty() {
        return Ok((None, NotifySettings::default()));
    }
    let mut destinations = Vec::with_capacity(raw.len());
    let mut settings = NotifySettings {
        kinds: Vec::new(),
        digest_seconds: u64::MAX,
    };
    for (i, n) in raw.into_iter().enumerate() {
        let field = format!("notifications[{i}]");
        let kind = match n.kind.as_str() {
            "slack" => NotifyKind::Slack,
            "webhook" => NotifyKind::Webhook,
            other => {
                return Err(ConfigError::at(
                    format!("{field}.kind"),
                    format!("{other:?} must be \"slack\" or \"webhook\""),
                ))
            }
        };
        let events = n
            .events
            .unwrap_or_else(|| NOTIFY_EVENTS.iter().map(|e| e.to_string()).collect());
        if events.is_empty() {
            return Err(ConfigError::at(
                format!("{field}.events"),
                "is an empty list",
            ));
        }
        for e in &events {
            if !NOTIFY_EVENTS.contains(&e.as_str()) {
                return Err(ConfigError::at(
                    format!("{field}.events"),
                    format!(
                        "unknown event {e:?}; expected some of: {}",
                        NOTIFY_EVENTS.join(", ")
                    ),
                ));
            }
        }
        let digest = n.digest_seconds.unwrap_or(60);
        if digest == 0 {
            return Err(ConfigError::at(
                format!("{field}.digest_seconds"),
                "must be at least 1",
            ));
        }
        if events.iter().any(|e| e == "dead_letters") {
            settings.digest_seconds = settings.digest_seconds.min(digest);
        }
        if let Some(secret) = &n.secret {
            crate::verify::standard_webhooks::decode_secret(secret)
                .map_err(|e| ConfigError::at(format!("{field}.secret"), e))?;
        }
        if !settings.kinds.contains(&kind) {
            settings.kinds.push(kind);
        }
        // The notification's event types are `<kind>:<event>`, `redis` standing for every
        // Redis event: a destination gets its own kind's body of the events it wants.
        let globs: Vec<String> = events
            .iter()
            .map(|e| match e.as_str() {
                "redis" => format!("{}:redis_*", kind.as_str()),
                other => format!("{}:{other}", kind.as_str()),
            })
            .collect();
        let filter = EventFilter::new(&globs, Vec::new())
            .map_err(|e| ConfigError::at(format!("{field}.events"), e))?;
        let name = n.name.unwrap_or_else(|| format!("{}-{i}", kind.as_str()));
        if destinations
            .iter()
            .any(|d: &DestinationConfig| d.name == name)
        {
            return Err(ConfigError::at(
                format!("{field}.name"),
                format!("duplicate notification name {name:?}"),
            ));
        }
        destinations.push(DestinationConfig {
            name,
            url: n.url,
            timeout_ms: 5_000,
            secret: n.secret.map(Secret::new),
            rate_limit_per_second: None,
            max_in_flight: 4,
            filter,
            forward_headers: Some(Vec::new()),
            ordering: None,
        });
    }
    if settings.digest_seconds == u64::MAX {
        settings.digest_seconds = 60;
    }
    // Nobody posts to it: ingest refuses it. The token only satisfies the verifier (and is
    // fixed, so that a reload does not take the source for changed).
    let token = "internal".to_string();
    let source = RawSource::internal(NOTIFICATIONS_SOURCE, Kind::Token.as_str(), token);
    let mut config = super::source::validate_source(source, "notifications")?;
    config.internal = true;
    for (i, d) in destinations.iter().enumerate() {
        super::source::check_destination_url(&d.url)
            .map_err(|e| ConfigError::at(format!("notifications[{i}].url"), e))?;
    }
    config.destinations = destinations;
    Ok((Some(config), settings))
}
