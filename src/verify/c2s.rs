//! C2S (Contact2Sale): `X-C2S-Signature: hex(HMAC(secret, body))`; a numeric body
//! `timestamp`, when present, must be within the tolerance. Several lead envelopes exist.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use super::{
    any_matches, candidates, check_timestamp, header, hmac_sha256, keys, pointer_text, Encoding,
    Inbound, Signed, Verifier, VerifyError,
};

const SIGNATURE: &str = "x-c2s-signature";

/// Verifier for C2S lead webhooks.
pub struct C2s {
    keys: Vec<Vec<u8>>,
    tolerance: i64,
}

impl C2s {
    /// A verifier accepting any of `secrets`.
    pub fn new(secrets: Vec<String>, tolerance: i64) -> Self {
        C2s {
            keys: keys(&secrets),
            tolerance,
        }
    }
}

/// The lead object of any of C2S's envelopes: `{id, attributes}` at the top, under `data`,
/// or under `lead`.
fn lead(json: &Value) -> Option<&Value> {
    ["/data", "/lead", ""]
        .into_iter()
        .filter_map(|p| json.pointer(p))
        .find(|v| v.get("id").is_some())
}

impl Verifier for C2s {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let signature = header(req.headers, SIGNATURE)?;
        let hex_sig = signature.trim();
        let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
        let sig = candidates([Some(hex_sig)], Encoding::Hex, SIGNATURE)?;
        if any_matches(&self.keys, &[req.body], &sig) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    fn verify_parsed(&self, json: &Value, now: i64) -> Result<(), VerifyError> {
        match json.get("timestamp").and_then(Value::as_i64) {
            // Some integrations send milliseconds.
            Some(ts) if ts > 100_000_000_000 => {
                check_timestamp(ts / 1000, now, self.tolerance, self.tolerance)
            }
            Some(ts) => check_timestamp(ts, now, self.tolerance, self.tolerance),
            None => Ok(()),
        }
    }

    fn needs_json(&self) -> bool {
        true
    }

    fn default_key(
        &self,
        _headers: &HeaderMap,
        json: Option<&Value>,
        _body: &[u8],
    ) -> Option<String> {
        let json = json?;
        let lead = lead(json)?;
        let id = pointer_text(Some(lead), "/id")?;
        let action = pointer_text(Some(json), "/hook_action")
            .or_else(|| pointer_text(Some(json), "/action"))
            .unwrap_or_default();
        let updated = pointer_text(Some(lead), "/attributes/updated_at").unwrap_or_default();
        Some(format!("{id}:{action}:{updated}"))
    }

    fn event_type(&self, _headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        pointer_text(json, "/hook_action").or_else(|| pointer_text(json, "/action"))
    }

    fn sign(&self, body: &[u8], _now: i64) -> Signed {
        let mac = hmac_sha256(&self.keys[0], &[body]);
        Signed {
            headers: vec![(SIGNATURE.into(), hex::encode(mac))],
            path_token: None,
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![SIGNATURE.into()]
    }
}
