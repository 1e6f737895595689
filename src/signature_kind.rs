//! The sender kinds and signature encodings that both `config` (to parse a source) and
//! `verify` (to check a webhook) name. A leaf: it imports neither, so they need not import
//! each other back.

use std::fmt;
use std::str::FromStr;

use base64::Engine;

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
    /// The bytes written in this encoding (base64: standard, padded).
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// The bytes of `text` (surrounding spaces ignored), or `None` when it is not valid.
    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(text.trim()).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok(),
        }
    }
}
