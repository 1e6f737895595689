//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,base64(HMAC(base64dec(whsec), id.ts.body))`, space-separated entries.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use super::{
    any_matches, base64_std, candidates, check_timestamp, header, header_text, hmac_sha256,
    pointer_text, unix_seconds, Encoding, Inbound, Signed, Verifier, VerifyError,
};

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

/// Decodes a `whsec_<base64>` secret into its key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or_else(|| "must be a Standard Webhooks secret starting with whsec_".to_string())?;
    let key = Encoding::Base64
        .decode(encoded)
        .ok_or_else(|| "the part after whsec_ is not base64".to_string())?;
    if key.is_empty() {
        return Err("the whsec_ secret is empty".into());
    }
    Ok(key)
}

/// The `v1,<base64>` signature of a message, as both senders and hookgate's delivery write it.
pub fn signature(key: &[u8], id: &str, ts: i64, body: &[u8]) -> String {
    let ts = ts.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", base64_std(&mac))
}

/// Verifier for the Standard Webhooks scheme (Svix and many others).
pub struct StandardWebhooks {
    keys: Vec<Vec<u8>>,
    tolerance: i64,
}

impl StandardWebhooks {
    /// A verifier accepting any of the `whsec_` secrets.
    pub fn new(secrets: &[String], tolerance: i64) -> Result<Self, String> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| decode_secret(s).map_err(|e| format!("secrets[{i}] {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StandardWebhooks { keys, tolerance })
    }
}

impl Verifier for StandardWebhooks {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let id = header(req.headers, ID)?;
        let ts_text = header(req.headers, TIMESTAMP)?;
        let signatures = header(req.headers, SIGNATURE)?;
        let ts = unix_seconds(ts_text, TIMESTAMP)?;
        // Entries of other versions (v1a) count toward the cap but are not compared.
        let entries = signatures.split(' ').filter(|e| !e.trim().is_empty());
        let v1 = entries.map(|entry| entry.strip_prefix("v1,"));
        let candidates = candidates(v1, Encoding::Base64, SIGNATURE)?;
        let ts_trim = ts_text.trim();
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_trim.as_bytes(), b".", req.body];
        if !any_matches(&self.keys, &parts, &candidates) {
            return Err(VerifyError::BadSignature);
        }
        check_timestamp(ts, req.now, self.tolerance, self.tolerance)
    }

    fn default_key(
        &self,
        headers: &HeaderMap,
        _json: Option<&Value>,
        _body: &[u8],
    ) -> Option<String> {
        header_text(headers, ID)
    }

    fn event_type(&self, _headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        pointer_text(json, "/type").or_else(|| pointer_text(json, "/eventType"))
    }

    fn sign(&self, body: &[u8], now: i64) -> Signed {
        let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        Signed {
            headers: vec![
                (SIGNATURE.into(), signature(&self.keys[0], &id, now, body)),
                (ID.into(), id),
                (TIMESTAMP.into(), now.to_string()),
            ],
            path_token: None,
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![SIGNATURE.into(), TIMESTAMP.into()]
    }
}
