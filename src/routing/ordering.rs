//! Ordered delivery: the key that puts a destination's events in sequence, and what a dead
//! event does to the events of its key that wait behind it.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::idempotency::{json_text, Selector};

/// What the events waiting behind a dead event of their key do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDead {
    /// The next event of the key is delivered (the dead one stays in the dead letters).
    #[default]
    Skip,
    /// The key waits until the dead letter is replayed or discarded by an operator.
    Block,
}

impl FromStr for OnDead {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(OnDead::Skip),
            "block" => Ok(OnDead::Block),
            other => Err(format!("{other:?} must be \"skip\" or \"block\"")),
        }
    }
}

impl fmt::Display for OnDead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnDead::Skip => "skip",
            OnDead::Block => "block",
        })
    }
}

/// A destination's ordering: events with the same key are delivered one at a time, in the
/// order they were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedDelivery {
    /// Where the key is read: a JSON pointer into the payload or a header.
    pub key: Selector,
    pub on_dead: OnDead,
}

impl OrderedDelivery {
    /// The ordering key of an event, from its stored headers (a JSON object with lower-case
    /// names) or its payload; None when the event has none (it is then delivered unordered).
    pub fn key_of(&self, stored_headers: &str, payload: &[u8]) -> Option<String> {
        match &self.key {
            Selector::Pointer(p) => serde_json::from_slice::<Value>(payload)
                .ok()?
                .pointer(p)
                .and_then(json_text),
            Selector::Header(name) => serde_json::from_str::<Value>(stored_headers)
                .ok()?
                .get(name.as_str())
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(sel: &str) -> OrderedDelivery {
        OrderedDelivery {
            key: sel.parse().unwrap(),
            on_dead: OnDead::Skip,
        }
    }

    #[test]
    fn the_key_comes_from_the_payload_or_a_stored_header() {
        let body = br#"{"itemId": "it-1", "n": 7}"#;
        assert_eq!(by("/itemId").key_of("{}", body).as_deref(), Some("it-1"));
        assert_eq!(by("/n").key_of("{}", body).as_deref(), Some("7"));
        assert_eq!(by("/missing").key_of("{}", body), None);
        assert_eq!(by("/itemId").key_of("{}", b"not json"), None);
        let headers = r#"{"x-lead-id": "L9", "x-empty": ""}"#;
        assert_eq!(
            by("header:X-Lead-Id").key_of(headers, b"").as_deref(),
            Some("L9")
        );
        assert_eq!(by("header:X-Empty").key_of(headers, b""), None);
        assert_eq!(by("header:X-Other").key_of(headers, b""), None);
    }

    #[test]
    fn on_dead_is_skip_or_block() {
        assert_eq!("skip".parse(), Ok(OnDead::Skip));
        assert_eq!("block".parse(), Ok(OnDead::Block));
        assert!("drop".parse::<OnDead>().is_err());
        assert_eq!(OnDead::default(), OnDead::Skip);
        assert_eq!(OnDead::Block.to_string(), "block");
    }
}
