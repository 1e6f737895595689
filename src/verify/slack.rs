//! Slack: `X-Slack-Signature: v0=hex(HMAC(secret, "v0:" ts ":" body))` with
//! `X-Slack-Request-Timestamp`; dedup on the body's `event_id`.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use super::{
    any_matches, candidates, check_timestamp, header, hmac_sha256, keys, pointer_text,
    unix_seconds, Encoding, Inbound, Signed, Verifier, VerifyError,
};

const SIGNATURE: &str = "x-slack-signature";
const TIMESTAMP: &str = "x-slack-request-timestamp";

/// Verifier for Slack's signing secret scheme (Events API, interactivity, commands).
pub struct Slack {
    keys: Vec<Vec<u8>>,
    tolerance: i64,
}

impl Slack {
    /// A verifier accepting any of `secrets`.
    pub fn new(secrets: Vec<String>, tolerance: i64) -> Self {
        Slack {
            keys: keys(&secrets),
            tolerance,
        }
    }
}

impl Verifier for Slack {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let signature = header(req.headers, SIGNATURE)?;
        let ts_text = header(req.headers, TIMESTAMP)?;
        let ts = unix_seconds(ts_text, TIMESTAMP)?;
        let hex_sig = signature
            .trim()
            .strip_prefix("v0=")
            .ok_or(VerifyError::MalformedHeader(SIGNATURE))?;
        let sig = candidates([Some(hex_sig)], Encoding::Hex, SIGNATURE)?;
        let ts_trim = ts_text.trim();
        if !any_matches(
            &self.keys,
            &[b"v0:", ts_trim.as_bytes(), b":", req.body],
            &sig,
        ) {
            return Err(VerifyError::BadSignature);
        }
        check_timestamp(ts, req.now, self.tolerance, self.tolerance)
    }

    fn default_key(
        &self,
        _headers: &HeaderMap,
        json: Option<&Value>,
        _body: &[u8],
    ) -> Option<String> {
        pointer_text(json, "/event_id")
    }

    fn event_type(&self, _headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        pointer_text(json, "/event/type").or_else(|| pointer_text(json, "/type"))
    }

    fn sign(&self, body: &[u8], now: i64) -> Signed {
        let ts = now.to_string();
        let mac = hmac_sha256(&self.keys[0], &[b"v0:", ts.as_bytes(), b":", body]);
        Signed {
            headers: vec![
                (SIGNATURE.into(), format!("v0={}", hex::encode(mac))),
                (TIMESTAMP.into(), ts),
            ],
            path_token: None,
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![SIGNATURE.into(), TIMESTAMP.into()]
    }
}
