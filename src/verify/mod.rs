//! Signature verification: one file per sender kind behind the [`Verifier`] trait.
//!
//! Every check runs over the raw body bytes and compares in constant time. Each kind also
//! knows how its sender signs ([`Verifier::sign`]), which `hookgate send` and the tests use.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use crate::idempotency::json_text;

pub use crate::signature_kind::{Encoding, Kind};
use mac::{any_matches, any_secret_eq, candidates};
pub use mac::{hmac_sha256, secret_eq, MAX_CANDIDATES};

pub mod c2s;
pub mod chatwoot;
pub mod github;
pub mod hmac_generic;
mod mac;
pub mod pluggy;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
#[cfg(test)]
mod tests;
pub mod token;

/// Why a webhook failed verification; every variant is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    #[error("signature does not match")]
    BadSignature,
    #[error("more than 8 signatures in header {0}")]
    TooManySignatures(&'static str),
    #[error("timestamp is outside the tolerance window")]
    TimestampOutOfTolerance,
    #[error("missing token in the URL path")]
    MissingToken,
    #[error("token does not match")]
    BadToken,
}

impl VerifyError {
    /// The stable error code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::MalformedHeader(_)
            | VerifyError::BadSignature
            | VerifyError::TooManySignatures(_) => "invalid_signature",
            VerifyError::TimestampOutOfTolerance => "stale_timestamp",
            VerifyError::MissingToken | VerifyError::BadToken => "invalid_token",
        }
    }
}

/// What a verifier sees of an inbound webhook.
pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The `{token}` segment of `/webhooks/{source}/{token}`, if any.
    pub path_token: Option<&'a str>,
    /// Unix seconds at receipt.
    pub now: i64,
}

/// What a sender adds to a body to sign it.
#[derive(Debug, Clone, Default)]
pub struct Signed {
    pub headers: Vec<(String, String)>,
    pub path_token: Option<String>,
}

/// One sender's signature scheme and its defaults.
pub trait Verifier: Send + Sync {
    /// Checks the signature (or token) over the raw body.
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError>;
    /// Checks that need the parsed body (such as a timestamp inside it).
    fn verify_parsed(&self, _json: &Value, _now: i64) -> Result<(), VerifyError> {
        Ok(())
    }
    /// Whether this sender always posts JSON, so anything else is a 400.
    fn needs_json(&self) -> bool {
        false
    }
    /// The kind's own idempotency key, when the request carries one.
    fn default_key(&self, headers: &HeaderMap, json: Option<&Value>, body: &[u8])
        -> Option<String>;
    /// The event type, for the audit trail and logs.
    fn event_type(&self, headers: &HeaderMap, json: Option<&Value>) -> Option<String>;
    /// Headers (or path token) that the sender would add to sign `body` at `now`.
    fn sign(&self, body: &[u8], now: i64) -> Signed;
    /// Request headers that carry a secret and must not be stored or logged.
    fn secret_headers(&self) -> &[&str] {
        &[]
    }
    /// Request headers that carry the signature (or its timestamp): never forwarded.
    fn signature_headers(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What a verifier is built from: the kind-specific fields of a source. `config` converts
/// its `SourceConfig` into this, so `verify` never needs `config` back.
// No Debug: it holds the secrets.
#[derive(Clone)]
pub struct Spec<'a> {
    /// The sender's scheme.
    pub kind: Kind,
    /// Every secret accepted (several during a rotation); the first one signs.
    pub secrets: Vec<&'a str>,
    /// How far a signed timestamp may be from now, for timestamped schemes.
    pub tolerance_seconds: u64,
    /// The header of kinds `hmac` and `pluggy`.
    pub signature_header: Option<&'a str>,
    /// What precedes the encoded MAC in kind `hmac`'s header.
    pub signature_prefix: Option<&'a str>,
    /// How kind `hmac` encodes its MAC (default hex).
    pub signature_encoding: Option<Encoding>,
}

/// Builds the verifier of a source (the one place that does); errors name what is wrong
/// with the kind's fields, so config validation calls it too.
pub fn build<'a>(spec: impl Into<Spec<'a>>) -> Result<Box<dyn Verifier>, String> {
    let spec = spec.into();
    let secrets = || {
        spec.secrets
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let tolerance = spec.tolerance_seconds as i64;
    let header = spec.signature_header.map(str::to_string);
    if spec.kind != Kind::Hmac && spec.kind != Kind::Pluggy && header.is_some() {
        return Err(format!(
            "signature_header applies to kinds hmac and pluggy, not {}",
            spec.kind
        ));
    }
    Ok(match spec.kind {
        Kind::Chatwoot => Box::new(chatwoot::Chatwoot::new(secrets(), tolerance)),
        Kind::Pluggy => Box::new(pluggy::Pluggy::new(secrets(), header)?),
        Kind::C2s => Box::new(c2s::C2s::new(secrets(), tolerance)),
        Kind::StandardWebhooks => Box::new(standard_webhooks::StandardWebhooks::new(
            &secrets(),
            tolerance,
        )?),
        Kind::Github => Box::new(github::Github::new(secrets())),
        Kind::Stripe => Box::new(stripe::Stripe::new(secrets(), tolerance)),
        Kind::Shopify => Box::new(shopify::Shopify::new(secrets())),
        Kind::Slack => Box::new(slack::Slack::new(secrets(), tolerance)),
        Kind::Hmac => Box::new(hmac_generic::GenericHmac::new(
            secrets(),
            header,
            spec.signature_prefix.unwrap_or_default().to_string(),
            spec.signature_encoding.unwrap_or(Encoding::Hex),
        )?),
        Kind::Token => Box::new(token::Token::new(secrets())),
    })
}

// ---- helpers of the schemes -----------------------------------------------------------------

/// The value of a header as text.
fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    let value = headers.get(name).ok_or(VerifyError::MissingHeader(name))?;
    value
        .to_str()
        .map_err(|_| VerifyError::MalformedHeader(name))
}

/// Parses a unix-seconds header value.
fn unix_seconds(text: &str, name: &'static str) -> Result<i64, VerifyError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| VerifyError::MalformedHeader(name))
}

/// Rejects timestamps older than `past` seconds or more than `future` seconds ahead.
pub fn check_timestamp(ts: i64, now: i64, past: i64, future: i64) -> Result<(), VerifyError> {
    let age = now.saturating_sub(ts);
    if age > past || -age > future {
        Err(VerifyError::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

/// Standard base64 with padding.
pub fn base64_std(bytes: &[u8]) -> String {
    Encoding::Base64.encode(bytes)
}

/// A header's value as an owned string, when present and text.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// A JSON pointer's value as text.
fn pointer_text(json: Option<&Value>, pointer: &str) -> Option<String> {
    json.and_then(|j| j.pointer(pointer)).and_then(json_text)
}

/// Keys of secrets as bytes, as most schemes use them.
fn keys(secrets: &[String]) -> Vec<Vec<u8>> {
    secrets.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// A fresh random id for headers that a sender makes unique per delivery.
fn fresh_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
