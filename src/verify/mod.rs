//! Signature verification: one file per sender kind behind the [`Verifier`] trait.
//!
//! Every check runs over the raw body bytes and compares in constant time. Each kind also
//! knows how its sender signs ([`Verifier::sign`]), which `hookgate send` and the tests use.

use std::fmt;
use std::str::FromStr;

use actix_web::http::header::HeaderMap;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::SourceConfig;
use crate::idempotency::json_text;

pub mod c2s;
pub mod chatwoot;
pub mod github;
pub mod hmac_generic;
pub mod pluggy;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
pub mod token;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why a webhook failed verification; every variant is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    #[error("signature does not match")]
    BadSignature,
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
            VerifyError::MalformedHeader(_) | VerifyError::BadSignature => "invalid_signature",
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
}

/// The sender kinds hookgate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chatwoot,
    Pluggy,
    C2s,
    StandardWebhooks,
    Github,
    Stripe,
    Shopify,
    Slack,
    Hmac,
    Token,
}

impl Kind {
    /// Every kind, in documentation order.
    pub const ALL: [Kind; 10] = [
        Kind::Chatwoot,
        Kind::Pluggy,
        Kind::C2s,
        Kind::StandardWebhooks,
        Kind::Github,
        Kind::Stripe,
        Kind::Shopify,
        Kind::Slack,
        Kind::Hmac,
        Kind::Token,
    ];

    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chatwoot => "chatwoot",
            Kind::Pluggy => "pluggy",
            Kind::C2s => "c2s",
            Kind::StandardWebhooks => "standard-webhooks",
            Kind::Github => "github",
            Kind::Stripe => "stripe",
            Kind::Shopify => "shopify",
            Kind::Slack => "slack",
            Kind::Hmac => "hmac",
            Kind::Token => "token",
        }
    }
}

impl FromStr for Kind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hex" => Ok(Encoding::Hex),
            "base64" => Ok(Encoding::Base64),
            other => Err(format!(
                "unknown encoding {other:?}; expected hex or base64"
            )),
        }
    }
}

impl Encoding {
    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => base64_std(bytes),
        }
    }
    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(text.trim()).ok(),
            Encoding::Base64 => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .ok()
            }
        }
    }
}

/// Builds the verifier of a source; errors name what is wrong with the kind's fields.
pub fn build(source: &SourceConfig) -> Result<Box<dyn Verifier>, String> {
    let secrets = || {
        source
            .secrets
            .iter()
            .map(|s| s.expose().to_string())
            .collect::<Vec<_>>()
    };
    let tolerance = source.tolerance_seconds as i64;
    if source.kind != Kind::Hmac && source.kind != Kind::Pluggy && source.signature_header.is_some()
    {
        return Err(format!(
            "signature_header applies to kinds hmac and pluggy, not {}",
            source.kind
        ));
    }
    Ok(match source.kind {
        Kind::Chatwoot => Box::new(chatwoot::Chatwoot::new(secrets(), tolerance)),
        Kind::Pluggy => Box::new(pluggy::Pluggy::new(
            secrets(),
            source.signature_header.clone(),
        )?),
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
            source.signature_header.clone(),
            source.signature_prefix.clone().unwrap_or_default(),
            source.signature_encoding.unwrap_or(Encoding::Hex),
        )?),
        Kind::Token => Box::new(token::Token::new(secrets())),
    })
}

// ---- shared primitives ----------------------------------------------------------------------

/// HMAC-SHA256 of the concatenated parts.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `expected` is the HMAC-SHA256 of the parts under `key`, in constant time.
pub fn hmac_matches(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

/// Whether any key signs the parts to any of the candidate signatures.
fn any_matches<K: AsRef<[u8]>>(keys: &[K], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    // Check every pair without early exit on the secret, so timing says nothing useful.
    let mut ok = false;
    for key in keys {
        for sig in candidates {
            ok |= hmac_matches(key.as_ref(), parts, sig);
        }
    }
    ok
}

/// Compares two secrets in constant time, without leaking their lengths.
pub fn secret_eq(a: &str, b: &str) -> bool {
    let ha = Sha256::digest(a.as_bytes());
    let hb = Sha256::digest(b.as_bytes());
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

/// Whether `provided` equals any of the secrets, in constant time.
fn any_secret_eq(secrets: &[String], provided: &str) -> bool {
    let mut ok = false;
    for s in secrets {
        ok |= secret_eq(s, provided);
    }
    ok
}

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
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
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
