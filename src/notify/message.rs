//! What a notification says: the event, its text, and its body for each kind. Pure.

use serde_json::{json, Value};

use crate::config::NotifyKind;

/// Something an operator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A destination's circuit opened: deliveries to it wait.
    CircuitOpened {
        source: String,
        destination: String,
        failures: u64,
        until_ms: u64,
    },
    /// A destination's circuit closed again.
    CircuitClosed { source: String, destination: String },
    /// Deliveries to a destination ended dead: how many since `since_ms`, the first reasons.
    DeadLetters {
        source: String,
        destination: String,
        count: u64,
        reasons: Vec<String>,
        since_ms: u64,
    },
    /// A replica could not write to Redis for a while: what it accepted meanwhile was spooled.
    RedisOutage {
        replica: String,
        seconds: u64,
        since_ms: u64,
    },
    /// The Redis masters in use changed (a Sentinel or Cluster failover).
    Failover { from: Vec<String>, to: Vec<String> },
    /// A replica's spool is empty again: the webhooks that went through it are in Redis.
    SpoolDrained {
        replica: String,
        webhooks: u64,
        since_ms: u64,
    },
}

impl Notice {
    /// The event, as `[[notifications]].events` names it.
    pub fn event(&self) -> &'static str {
        match self {
            Notice::CircuitOpened { .. } => "circuit_opened",
            Notice::CircuitClosed { .. } => "circuit_closed",
            Notice::DeadLetters { .. } => "dead_letters",
            Notice::RedisOutage { .. } => "redis_outage",
            Notice::SpoolDrained { .. } => "redis_spool_drained",
            Notice::Failover { .. } => "redis_failover",
        }
    }

    /// The source and destination concerned (none for a Redis outage).
    fn route(&self) -> (&str, &str) {
        match self {
            Notice::RedisOutage { .. } | Notice::SpoolDrained { .. } | Notice::Failover { .. } => {
                ("", "")
            }
            Notice::CircuitOpened {
                source,
                destination,
                ..
            }
            | Notice::CircuitClosed {
                source,
                destination,
            }
            | Notice::DeadLetters {
                source,
                destination,
                ..
            } => (source, destination),
        }
    }

    /// One line for people.
    pub fn text(&self) -> String {
        let (source, destination) = self.route();
        match self {
            Notice::RedisOutage {
                replica, seconds, ..
            } => format!(
                "hookgate: replica {replica} could not write to Redis for {seconds} s; the webhooks it accepted meanwhile were spooled on its disk and are being moved into Redis"
            ),
            Notice::Failover { from, to } => format!(
                "hookgate: a Redis failover: the masters were {}, they are {} now",
                from.join(", "),
                to.join(", ")
            ),
            Notice::SpoolDrained {
                replica, webhooks, ..
            } => {
                let held = if *webhooks == 1 {
                    "the webhook it held is".to_string()
                } else {
                    format!("the {webhooks} webhooks it held are")
                };
                format!("hookgate: replica {replica}'s spool is empty again: {held} in Redis now")
            }
            Notice::CircuitOpened { failures, .. } => format!(
                "hookgate: the circuit of {source} → {destination} opened after {failures} failures in a row; its deliveries wait until it closes"
            ),
            Notice::CircuitClosed { .. } => format!(
                "hookgate: the circuit of {source} → {destination} closed; deliveries resume"
            ),
            Notice::DeadLetters { count, reasons, .. } => {
                let plural = if *count == 1 { "y" } else { "ies" };
                format!(
                    "hookgate: {count} deliver{plural} of {source} → {destination} ended in the dead letters; first reasons: {}",
                    reasons.join("; ")
                )
            }
        }
    }

    /// The body a notification of `kind` carries.
    pub fn body(&self, kind: NotifyKind) -> Value {
        let (source, destination) = self.route();
        match kind {
            NotifyKind::Slack => json!({ "text": self.text() }),
            NotifyKind::Webhook => {
                let mut body = json!({ "event": self.event(), "text": self.text() });
                if !source.is_empty() {
                    body["source"] = json!(source);
                    body["destination"] = json!(destination);
                }
                match self {
                    Notice::CircuitOpened {
                        failures, until_ms, ..
                    } => {
                        body["failures"] = json!(failures);
                        body["open_until_ms"] = json!(until_ms);
                    }
                    Notice::CircuitClosed { .. } => {}
                    Notice::Failover { from, to } => {
                        body["from"] = json!(from);
                        body["to"] = json!(to);
                    }
                    Notice::SpoolDrained {
                        replica,
                        webhooks,
                        since_ms,
                    } => {
                        body["replica"] = json!(replica);
                        body["webhooks"] = json!(webhooks);
                        body["since_ms"] = json!(since_ms);
                    }
                    Notice::RedisOutage {
                        replica,
                        seconds,
                        since_ms,
                    } => {
                        body["replica"] = json!(replica);
                        body["seconds"] = json!(seconds);
                        body["since_ms"] = json!(since_ms);
                    }
                    Notice::DeadLetters {
                        count,
                        reasons,
                        since_ms,
                        ..
                    } => {
                        body["count"] = json!(count);
                        body["reasons"] = json!(reasons);
                        body["since_ms"] = json!(since_ms);
                    }
                }
                body
            }
        }
    }

    /// What identifies this occurrence, so that it is queued once whoever notices it: a
    /// circuit opening by the time it opens until, a digest by the time it began; a closing
    /// is seen by one replica only (the one whose call closed it), so it needs no more.
    pub fn occurrence(&self) -> Option<String> {
        let (source, destination) = self.route();
        match self {
            Notice::CircuitOpened { until_ms, .. } => {
                Some(format!("circuit_opened:{source}/{destination}:{until_ms}"))
            }
            Notice::CircuitClosed { .. } => None,
            Notice::DeadLetters { since_ms, .. } => {
                Some(format!("dead_letters:{source}/{destination}:{since_ms}"))
            }
            // Each replica's outage is its own occurrence.
            Notice::RedisOutage {
                replica, since_ms, ..
            } => Some(format!("redis_outage:{replica}:{since_ms}")),
            Notice::SpoolDrained {
                replica, since_ms, ..
            } => Some(format!("redis_spool_drained:{replica}:{since_ms}")),
            // Every replica sees the same change within seconds: one message for it. The hour
            // tells a later flip to the same masters from this one (at an hour's turn, two
            // replicas may each send one).
            Notice::Failover { from, to } => Some(format!(
                "redis_failover:{}->{}:{}",
                from.join(","),
                to.join(","),
                crate::circuit::now_ms() / 3_600_000
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened() -> Notice {
        Notice::CircuitOpened {
            source: "github".into(),
            destination: "ci".into(),
            failures: 5,
            until_ms: 1_000,
        }
    }

    #[test]
    fn a_slack_body_is_text_naming_the_source_and_destination() {
        let body = opened().body(NotifyKind::Slack);
        let text = body["text"].as_str().expect("text");
        assert!(
            text.contains("github → ci") && text.contains("opened"),
            "{text}"
        );
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    }

    #[test]
    fn a_webhook_body_carries_the_details() {
        let digest = Notice::DeadLetters {
            source: "s".into(),
            destination: "d".into(),
            count: 50,
            reasons: vec!["410 gone".into()],
            since_ms: 7,
        };
        let body = digest.body(NotifyKind::Webhook);
        assert_eq!(body["event"], "dead_letters");
        assert_eq!(body["count"], 50);
        assert_eq!(body["reasons"][0], "410 gone");
        assert!(digest.text().contains("50 deliveries"), "{}", digest.text());
        assert_eq!(digest.occurrence().as_deref(), Some("dead_letters:s/d:7"));
        assert_eq!(opened().body(NotifyKind::Webhook)["open_until_ms"], 1_000);
    }
}
