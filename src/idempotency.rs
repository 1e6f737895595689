//! Idempotency keys: what makes two deliveries of a sender "the same webhook".

use std::fmt;
use std::str::FromStr;

use actix_web::http::header::{HeaderMap, HeaderName};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where to read a key part (or the event type) from: a JSON pointer or a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A JSON pointer into the body, such as `/eventId`.
    Pointer(String),
    /// A request header, written `header:Name` in the config.
    Header(HeaderName),
}

impl FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("header:") {
            HeaderName::from_bytes(name.trim().as_bytes())
                .map(Selector::Header)
                .map_err(|_| format!("{name:?} is not a valid header name"))
        } else if s.starts_with('/') {
            Ok(Selector::Pointer(s.to_string()))
        } else {
            Err(format!(
                "{s:?} must be a JSON pointer starting with '/' or header:Name"
            ))
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Pointer(p) => f.write_str(p),
            Selector::Header(h) => write!(f, "header:{h}"),
        }
    }
}

impl Selector {
    /// The selected value as text, when present and not empty.
    pub fn select(&self, headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        match self {
            Selector::Pointer(p) => json.and_then(|j| j.pointer(p)).and_then(json_text),
            Selector::Header(h) => headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        }
    }

    /// Whether the selector reads the body.
    pub fn needs_json(&self) -> bool {
        matches!(self, Selector::Pointer(_))
    }
}

/// A JSON value as key text: strings as they are, numbers and booleans printed, null none.
pub fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        other => Some(other.to_string()),
    }
}

/// The fallback key: a hash of the raw body.
pub fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// Joins configured selectors into one key; `None` when any part is missing.
pub fn from_selectors(
    selectors: &[Selector],
    headers: &HeaderMap,
    json: Option<&Value>,
) -> Option<String> {
    let mut key = String::new();
    for (i, sel) in selectors.iter().enumerate() {
        if i > 0 {
            key.push(':');
        }
        key.push_str(&sel.select(headers, json)?);
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn parses_pointers_and_headers() {
        assert_eq!("/eventId".parse(), Ok(Selector::Pointer("/eventId".into())));
        assert!(matches!("header:X-Id".parse(), Ok(Selector::Header(_))));
        assert!("eventId".parse::<Selector>().is_err());
        assert!("header:bad name".parse::<Selector>().is_err());
    }

    #[test]
    fn joins_selected_parts() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-id"),
            HeaderValue::from_static("h1"),
        );
        let body = json!({"a": {"b": 7}, "s": "x"});
        let sels: Vec<Selector> = vec!["/a/b".parse().unwrap(), "header:X-Id".parse().unwrap()];
        assert_eq!(
            from_selectors(&sels, &headers, Some(&body)).as_deref(),
            Some("7:h1")
        );
        let missing: Vec<Selector> = vec!["/nope".parse().unwrap()];
        assert_eq!(from_selectors(&missing, &headers, Some(&body)), None);
    }

    #[test]
    fn body_hash_is_stable_and_distinct() {
        assert_eq!(body_hash(b"a"), body_hash(b"a"));
        assert_ne!(body_hash(b"a"), body_hash(b"b"));
    }
}
