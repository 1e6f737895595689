//! Shopify: `X-Shopify-Hmac-Sha256: base64(HMAC(secret, body))`; dedup on
//! `X-Shopify-Webhook-Id`; no timestamp.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use super::{
    any_matches, base64_std, candidates, fresh_id, header, header_text, hmac_sha256, keys,
    Encoding, Inbound, Signed, Verifier, VerifyError,
};

const SIGNATURE: &str = "x-shopify-hmac-sha256";
const WEBHOOK_ID: &str = "x-shopify-webhook-id";
const TOPIC: &str = "x-shopify-topic";

/// Verifier for Shopify webhooks.
pub struct Shopify {
    keys: Vec<Vec<u8>>,
}

impl Shopify {
    /// A verifier accepting any of `secrets`.
    pub fn new(secrets: Vec<String>) -> Self {
        Shopify {
            keys: keys(&secrets),
        }
    }
}

impl Verifier for Shopify {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let signature = header(req.headers, SIGNATURE)?;
        let sig = candidates([Some(signature)], Encoding::Base64, SIGNATURE)?;
        if any_matches(&self.keys, &[req.body], &sig) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    fn default_key(
        &self,
        headers: &HeaderMap,
        _json: Option<&Value>,
        _body: &[u8],
    ) -> Option<String> {
        header_text(headers, WEBHOOK_ID)
    }

    fn event_type(&self, headers: &HeaderMap, _json: Option<&Value>) -> Option<String> {
        header_text(headers, TOPIC)
    }

    fn sign(&self, body: &[u8], _now: i64) -> Signed {
        let mac = hmac_sha256(&self.keys[0], &[body]);
        Signed {
            headers: vec![
                (SIGNATURE.into(), base64_std(&mac)),
                (WEBHOOK_ID.into(), fresh_id()),
            ],
            path_token: None,
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![SIGNATURE.into()]
    }
}
