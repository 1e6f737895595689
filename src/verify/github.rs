//! GitHub: `X-Hub-Signature-256: sha256=hex(HMAC(secret, body))`; dedup on `X-GitHub-Delivery`.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use super::{
    any_matches, candidates, fresh_id, header, header_text, hmac_sha256, keys, Encoding, Inbound,
    Signed, Verifier, VerifyError,
};

const SIGNATURE: &str = "x-hub-signature-256";
/// GitHub's SHA-1 signature, still sent alongside: not checked, but never forwarded either.
const LEGACY_SIGNATURE: &str = "x-hub-signature";
const DELIVERY: &str = "x-github-delivery";
const EVENT: &str = "x-github-event";

/// Verifier for GitHub webhooks.
pub struct Github {
    keys: Vec<Vec<u8>>,
}

impl Github {
    /// A verifier accepting any of `secrets`.
    pub fn new(secrets: Vec<String>) -> Self {
        Github {
            keys: keys(&secrets),
        }
    }
}

impl Verifier for Github {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let signature = header(req.headers, SIGNATURE)?;
        let hex_sig = signature
            .trim()
            .strip_prefix("sha256=")
            .ok_or(VerifyError::MalformedHeader(SIGNATURE))?;
        let sig = candidates([Some(hex_sig)], Encoding::Hex, SIGNATURE)?;
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
        header_text(headers, DELIVERY)
    }

    fn event_type(&self, headers: &HeaderMap, _json: Option<&Value>) -> Option<String> {
        header_text(headers, EVENT)
    }

    fn sign(&self, body: &[u8], _now: i64) -> Signed {
        let mac = hmac_sha256(&self.keys[0], &[body]);
        Signed {
            headers: vec![
                (SIGNATURE.into(), format!("sha256={}", hex::encode(mac))),
                (DELIVERY.into(), fresh_id()),
            ],
            path_token: None,
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![SIGNATURE.into(), LEGACY_SIGNATURE.into()]
    }
}
