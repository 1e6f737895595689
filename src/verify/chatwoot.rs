//! Chatwoot: `X-Chatwoot-Signature: sha256=hex(HMAC(secret, ts + "." + body))` with
//! `X-Chatwoot-Timestamp`; older than the tolerance or over 30 s ahead is rejected.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use super::{
    any_matches, candidates, check_timestamp, header, hmac_sha256, keys, pointer_text,
    unix_seconds, Encoding, Inbound, Signed, Verifier, VerifyError,
};
use crate::idempotency::body_hash;

const SIGNATURE: &str = "x-chatwoot-signature";
const TIMESTAMP: &str = "x-chatwoot-timestamp";
/// Chatwoot's own clock-skew allowance for timestamps ahead of ours.
const FUTURE_SKEW: i64 = 30;

/// Verifier for Chatwoot account, API-inbox and agent-bot webhooks.
pub struct Chatwoot {
    keys: Vec<Vec<u8>>,
    tolerance: i64,
}

impl Chatwoot {
    /// A verifier accepting any of `secrets`.
    pub fn new(secrets: Vec<String>, tolerance: i64) -> Self {
        Chatwoot {
            keys: keys(&secrets),
            tolerance,
        }
    }
}

impl Verifier for Chatwoot {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let signature = header(req.headers, SIGNATURE)?;
        let ts_text = header(req.headers, TIMESTAMP)?;
        let ts = unix_seconds(ts_text, TIMESTAMP)?;
        let hex_sig = signature
            .trim()
            .strip_prefix("sha256=")
            .ok_or(VerifyError::MalformedHeader(SIGNATURE))?;
        let sig = candidates([Some(hex_sig)], Encoding::Hex, SIGNATURE)?;
        if !any_matches(
            &self.keys,
            &[ts_text.trim().as_bytes(), b".", req.body],
            &sig,
        ) {
            return Err(VerifyError::BadSignature);
        }
        check_timestamp(ts, req.now, self.tolerance, FUTURE_SKEW.min(self.tolerance))
    }

    fn needs_json(&self) -> bool {
        true
    }

    fn default_key(
        &self,
        _headers: &HeaderMap,
        json: Option<&Value>,
        body: &[u8],
    ) -> Option<String> {
        let json = json?;
        let event = pointer_text(Some(json), "/event")?;
        let id = pointer_text(Some(json), "/id")?;
        let account = pointer_text(Some(json), "/account/id")
            .or_else(|| pointer_text(Some(json), "/account_id"))
            .unwrap_or_default();
        // These events legitimately repeat for one id; only an identical body is a duplicate.
        let repeats = event == "message_updated" || event.starts_with("conversation_");
        Some(if repeats {
            format!("{account}:{event}:{id}:{}", body_hash(body))
        } else {
            format!("{account}:{event}:{id}")
        })
    }

    fn event_type(&self, _headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        pointer_text(json, "/event")
    }

    fn sign(&self, body: &[u8], now: i64) -> Signed {
        let ts = now.to_string();
        let mac = hmac_sha256(&self.keys[0], &[ts.as_bytes(), b".", body]);
        Signed {
            headers: vec![
                (SIGNATURE.into(), format!("sha256={}", hex::encode(mac))),
                (TIMESTAMP.into(), ts),
            ],
            path_token: None,
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![SIGNATURE.into(), TIMESTAMP.into()]
    }
}
