//! Which events a destination wants: globs on the event type, and accepted values at JSON
//! pointers into the payload. Checked once, when a destination's worker reads the event.

use serde_json::Value;
use wildmatch::WildMatch;

/// A destination's filter; the default wants every event.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Globs (`*`, `?`) on the event type; empty means any type.
    event_types: Vec<WildMatch>,
    /// Every pointer must hold one of its accepted values.
    payload: Vec<PayloadMatch>,
}

#[derive(Debug, Clone)]
struct PayloadMatch {
    pointer: String,
    accepted: Vec<Value>,
}

/// A filter the configuration cannot mean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("event_types has an empty pattern")]
    EmptyPattern,
    #[error("{0:?} is not a JSON pointer: it must start with '/'")]
    NotAPointer(String),
    #[error("{0:?} has an empty list of accepted values")]
    NothingAccepted(String),
}

impl EventFilter {
    /// A filter of event-type globs and `(pointer, value or list of accepted values)` pairs.
    pub fn new(event_types: &[String], payload: Vec<(String, Value)>) -> Result<Self, FilterError> {
        if event_types.iter().any(|p| p.trim().is_empty()) {
            return Err(FilterError::EmptyPattern);
        }
        let payload = payload
            .into_iter()
            .map(|(pointer, value)| {
                if !pointer.starts_with('/') {
                    return Err(FilterError::NotAPointer(pointer));
                }
                let accepted = match value {
                    Value::Array(list) => list,
                    one => vec![one],
                };
                if accepted.is_empty() {
                    return Err(FilterError::NothingAccepted(pointer));
                }
                Ok(PayloadMatch { pointer, accepted })
            })
            .collect::<Result<_, _>>()?;
        Ok(EventFilter {
            event_types: event_types.iter().map(|p| WildMatch::new(p)).collect(),
            payload,
        })
    }

    /// The event-type globs, as configured (empty: any type).
    pub fn event_types(&self) -> Vec<String> {
        self.event_types.iter().map(|g| g.pattern()).collect()
    }

    /// The payload conditions, as configured: pointer → accepted values.
    pub fn payload_conditions(&self) -> serde_json::Map<String, Value> {
        self.payload
            .iter()
            .map(|m| (m.pointer.clone(), Value::Array(m.accepted.clone())))
            .collect()
    }

    /// Whether every event passes (nothing to check).
    pub fn wants_everything(&self) -> bool {
        self.event_types.is_empty() && self.payload.is_empty()
    }

    /// Whether checking needs the payload parsed as JSON.
    pub fn needs_payload(&self) -> bool {
        !self.payload.is_empty()
    }

    /// Whether the destination wants an event of this type (empty when unknown) and payload
    /// (None when it is not JSON: then no payload condition holds).
    pub fn wants(&self, event_type: &str, payload: Option<&Value>) -> bool {
        let type_ok =
            self.event_types.is_empty() || self.event_types.iter().any(|g| g.matches(event_type));
        type_ok
            && self.payload.iter().all(|m| {
                payload
                    .and_then(|p| p.pointer(&m.pointer))
                    .is_some_and(|v| m.accepted.iter().any(|a| same(a, v)))
            })
    }
}

/// JSON equality, except that numbers compare by value (`3` accepts `3.0`); two integers
/// compare exactly (64-bit ids are beyond a float's precision).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(x), int(y)) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn types(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_condition_wants_everything() {
        let f = EventFilter::default();
        assert!(f.wants_everything());
        assert!(f.wants("", None));
    }

    #[test]
    fn event_types_are_globs() {
        let f = EventFilter::new(&types(&["message_created", "conversation_*"]), vec![]).unwrap();
        assert!(f.wants("message_created", None));
        assert!(f.wants("conversation_status_changed", None));
        assert!(!f.wants("message_updated", None));
        assert!(
            !f.wants("", None),
            "an unknown type matches no named pattern"
        );
        assert!(!f.needs_payload());
    }

    #[test]
    fn every_pointer_must_hold_an_accepted_value() {
        let f = EventFilter::new(
            &[],
            vec![
                ("/action".into(), json!(["opened", "reopened"])),
                ("/account/id".into(), json!(3)),
            ],
        )
        .unwrap();
        assert!(f.needs_payload());
        let opened = json!({"action": "opened", "account": {"id": 3}});
        assert!(f.wants("", Some(&opened)));
        let float = json!({"action": "reopened", "account": {"id": 3.0}});
        assert!(f.wants("", Some(&float)));
        let closed = json!({"action": "closed", "account": {"id": 3}});
        assert!(!f.wants("", Some(&closed)));
        let other = json!({"action": "opened", "account": {"id": 4}});
        assert!(!f.wants("", Some(&other)));
        let missing = json!({"action": "opened"});
        assert!(!f.wants("", Some(&missing)));
        let text = json!({"action": "opened", "account": {"id": "3"}});
        assert!(!f.wants("", Some(&text)), "a string is not the number");
        let big =
            EventFilter::new(&[], vec![("/id".into(), json!(9_007_199_254_740_993u64))]).unwrap();
        assert!(big.wants("", Some(&json!({"id": 9_007_199_254_740_993u64}))));
        assert!(
            !big.wants("", Some(&json!({"id": 9_007_199_254_740_992u64}))),
            "integers beyond a float's precision compare exactly"
        );
        assert!(
            !f.wants("", None),
            "a payload that is not JSON holds nothing"
        );
    }

    #[test]
    fn types_and_payload_must_both_match() {
        let f = EventFilter::new(
            &types(&["pull_*"]),
            vec![("/action".into(), json!("opened"))],
        )
        .unwrap();
        let opened = json!({"action": "opened"});
        assert!(f.wants("pull_request", Some(&opened)));
        assert!(!f.wants("push", Some(&opened)));
    }

    #[test]
    fn meaningless_filters_are_refused() {
        assert_eq!(
            EventFilter::new(&[], vec![("action".into(), json!(1))]).unwrap_err(),
            FilterError::NotAPointer("action".into())
        );
        assert_eq!(
            EventFilter::new(&[], vec![("/a".into(), json!([]))]).unwrap_err(),
            FilterError::NothingAccepted("/a".into())
        );
        assert_eq!(
            EventFilter::new(&types(&[" "]), vec![]).unwrap_err(),
            FilterError::EmptyPattern
        );
    }
}
