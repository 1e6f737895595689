//! Which of the sender's request headers a destination receives.

use std::collections::HashSet;

use actix_web::http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use wildmatch::WildMatch;

use crate::signature_kind::Kind;

/// GitHub's headers that describe the event, forwarded when a destination names none.
const GITHUB_DEFAULT: [&str; 5] = [
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-ID",
    "X-GitHub-Hook-Installation-Target-Type",
];

/// Shopify's headers that describe the event, forwarded when a destination names none.
const SHOPIFY_DEFAULT: [&str; 6] = [
    "X-Shopify-Topic",
    "X-Shopify-Shop-Domain",
    "X-Shopify-Webhook-Id",
    "X-Shopify-API-Version",
    "X-Shopify-Event-Id",
    "X-Shopify-Triggered-At",
];

/// Names never forwarded: hop-by-hop and transport headers belong to the sender's connection,
/// and hookgate sets the rest itself on every delivery.
const NEVER: [&str; 14] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "content-type",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "user-agent",
];

/// Prefixes never forwarded: proxy credentials and hop headers, and hookgate's own.
const NEVER_PREFIXES: [&str; 2] = ["proxy-", "hookgate-"];

/// The kind's default patterns, used when a destination names none.
pub fn default_patterns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Github => &GITHUB_DEFAULT,
        Kind::Shopify => &SHOPIFY_DEFAULT,
        _ => &[],
    }
}

/// The stored request headers a destination is sent along with the event.
#[derive(Debug, Clone, Default)]
pub struct ForwardHeaders {
    /// Case-insensitive globs; empty means nothing is forwarded.
    patterns: Vec<WildMatch>,
    /// Lower-case names that no pattern can let through.
    never: HashSet<String>,
}

impl ForwardHeaders {
    /// The destination's patterns (the kind's default when it names none), minus `never`
    /// (lower-case names of headers that bear secrets or signatures) and the fixed exclusions.
    pub fn new(kind: Kind, configured: Option<&[String]>, never: Vec<String>) -> Self {
        let patterns = match configured {
            Some(list) => list
                .iter()
                .map(|p| WildMatch::new_case_insensitive(p))
                .collect(),
            None => default_patterns(kind)
                .iter()
                .map(|p| WildMatch::new_case_insensitive(p))
                .collect(),
        };
        let never = never
            .into_iter()
            .map(|n| n.to_ascii_lowercase())
            .chain(NEVER.iter().map(|n| n.to_string()))
            .collect();
        ForwardHeaders { patterns, never }
    }

    /// Whether this destination forwards any of the sender's headers at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a header of this name may be forwarded.
    pub fn allows(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        !self.never.contains(&lower)
            && !NEVER_PREFIXES.iter().any(|p| lower.starts_with(p))
            && self.patterns.iter().any(|p| p.matches(&lower))
    }

    /// The headers to send from the stored headers of an event (a JSON object): nothing when
    /// the text is not one, and no header whose name or value could not be sent as is.
    pub fn select(&self, stored: &str) -> Vec<(String, String)> {
        // Most destinations forward nothing: skip parsing the stored headers for them.
        if self.is_empty() {
            return Vec::new();
        }
        let Ok(map) = serde_json::from_str::<Map<String, Value>>(stored) else {
            return Vec::new();
        };
        map.into_iter()
            .filter_map(|(name, value)| {
                let Value::String(value) = value else {
                    return None;
                };
                let sendable = HeaderName::from_bytes(name.as_bytes()).is_ok()
                    && HeaderValue::from_str(&value).is_ok();
                (sendable && self.allows(&name)).then_some((name, value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(pairs: &[(&str, &str)]) -> String {
        let map: Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        Value::Object(map).to_string()
    }

    fn names(mut got: Vec<(String, String)>) -> Vec<String> {
        got.sort();
        got.into_iter().map(|(k, _)| k).collect()
    }

    fn patterns(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn github_default_forwards_the_event_headers_only() {
        let f = ForwardHeaders::new(Kind::Github, None, vec!["x-hub-signature-256".into()]);
        let got = f.select(&stored(&[
            ("x-github-event", "push"),
            ("x-github-delivery", "d-1"),
            ("x-github-hook-id", "42"),
            ("x-github-hook-installation-target-id", "7"),
            ("x-github-hook-installation-target-type", "repository"),
            ("x-hub-signature-256", "sha256=ab"),
            ("x-other", "no"),
        ]));
        assert_eq!(
            names(got.clone()),
            [
                "x-github-delivery",
                "x-github-event",
                "x-github-hook-id",
                "x-github-hook-installation-target-id",
                "x-github-hook-installation-target-type",
            ]
        );
        assert!(got.contains(&("x-github-event".into(), "push".into())));
    }

    #[test]
    fn shopify_default_forwards_its_event_headers() {
        let f = ForwardHeaders::new(Kind::Shopify, None, vec!["x-shopify-hmac-sha256".into()]);
        let got = f.select(&stored(&[
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-shop-domain", "a.myshopify.com"),
            ("x-shopify-webhook-id", "w"),
            ("x-shopify-api-version", "2024-01"),
            ("x-shopify-event-id", "e"),
            ("x-shopify-triggered-at", "t"),
            ("x-shopify-hmac-sha256", "abc="),
        ]));
        assert_eq!(got.len(), 6, "{got:?}");
        assert!(!names(got).contains(&"x-shopify-hmac-sha256".to_string()));
    }

    #[test]
    fn other_kinds_forward_nothing_by_default() {
        let headers = stored(&[("stripe-signature", "t=1"), ("x-custom", "1")]);
        for kind in Kind::ALL {
            if kind == Kind::Github || kind == Kind::Shopify {
                continue;
            }
            let f = ForwardHeaders::new(kind, None, Vec::new());
            assert!(f.is_empty(), "{kind}");
            assert!(f.select(&headers).is_empty(), "{kind}");
        }
    }

    #[test]
    fn an_empty_list_forwards_nothing_even_for_github() {
        let f = ForwardHeaders::new(Kind::Github, Some(&[]), Vec::new());
        assert!(f.select(&stored(&[("x-github-event", "push")])).is_empty());
    }

    #[test]
    fn patterns_match_names_case_insensitively() {
        let f = ForwardHeaders::new(Kind::Token, Some(&patterns(&["X-Tenant"])), Vec::new());
        assert_eq!(
            f.select(&stored(&[("x-tenant", "acme"), ("x-tenant-2", "no")])),
            [("x-tenant".to_string(), "acme".to_string())]
        );
        assert!(f.allows("X-TENANT"));
        let lower = ForwardHeaders::new(Kind::Token, Some(&patterns(&["x-tenant"])), Vec::new());
        assert!(lower.allows("X-Tenant"));
    }

    #[test]
    fn star_patterns_match_any_characters() {
        let f = ForwardHeaders::new(
            Kind::Chatwoot,
            Some(&patterns(&["X-Chatwoot-*", "*-Trace"])),
            vec!["x-chatwoot-signature".into()],
        );
        let got = f.select(&stored(&[
            ("x-chatwoot-delivery", "1"),
            ("x-chatwoot-signature", "sha256=ab"),
            ("x-b3-trace", "t"),
            ("x-other", "no"),
        ]));
        assert_eq!(names(got), ["x-b3-trace", "x-chatwoot-delivery"]);
    }

    #[test]
    fn the_never_list_wins_over_any_pattern() {
        let never = vec!["Authorization".into(), "x-hub-signature-256".into()];
        let f = ForwardHeaders::new(Kind::Github, Some(&patterns(&["*"])), never);
        let got = f.select(&stored(&[
            ("authorization", "Bearer x"),
            ("x-hub-signature-256", "sha256=ab"),
            ("host", "gw"),
            ("content-length", "3"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "h2c"),
            ("expect", "100-continue"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "close"),
            ("content-type", "text/plain"),
            ("webhook-id", "forged"),
            ("webhook-timestamp", "1"),
            ("webhook-signature", "v1,x"),
            ("user-agent", "GitHub-Hookshot"),
            ("hookgate-source", "forged"),
            ("hookgate-attempt", "9"),
            ("x-custom", "kept"),
        ]));
        assert_eq!(got, [("x-custom".to_string(), "kept".to_string())]);
        let explicit = ForwardHeaders::new(
            Kind::Github,
            Some(&patterns(&["Authorization", "Host", "Webhook-Id"])),
            vec!["authorization".into()],
        );
        assert!(!explicit.allows("authorization"));
        assert!(!explicit.allows("Host"));
        assert!(!explicit.allows("webhook-id"));
    }

    #[test]
    fn unsendable_values_and_malformed_text_yield_nothing() {
        let f = ForwardHeaders::new(Kind::Token, Some(&patterns(&["*"])), Vec::new());
        let got = f.select(&stored(&[("x-bad", "a\nb"), ("x-good", "ok")]));
        assert_eq!(got, [("x-good".to_string(), "ok".to_string())]);
        assert!(f.select(r#"{"x-num": 3, "x-null": null}"#).is_empty());
        assert!(f.select(r#"{"bad name": "v"}"#).is_empty());
        assert!(f.select("not json").is_empty());
        assert!(f.select(r#"["x-a", "b"]"#).is_empty());
        assert!(f.select("").is_empty());
    }
}
