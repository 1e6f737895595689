//! Stripe: `Stripe-Signature: t=<ts>,v1=<hex HMAC(secret, t.body)>[,v1=...]`; the key is the
//! whole `whsec_...` string as bytes (not decoded); dedup on the body's `id`.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use super::{
    any_matches, candidates, check_timestamp, header, hmac_sha256, keys, pointer_text, Encoding,
    Inbound, Signed, Verifier, VerifyError,
};

const SIGNATURE: &str = "stripe-signature";

/// Verifier for Stripe webhooks.
pub struct Stripe {
    keys: Vec<Vec<u8>>,
    tolerance: i64,
}

impl Stripe {
    /// A verifier accepting any of `secrets`.
    pub fn new(secrets: Vec<String>, tolerance: i64) -> Self {
        Stripe {
            keys: keys(&secrets),
            tolerance,
        }
    }
}

impl Verifier for Stripe {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let value = header(req.headers, SIGNATURE)?;
        let items = || {
            value
                .split(',')
                .filter_map(|item| item.trim().split_once('='))
        };
        let ts_text = items()
            .find_map(|(k, v)| (k == "t").then_some(v))
            .ok_or(VerifyError::MalformedHeader(SIGNATURE))?;
        let ts: i64 = ts_text
            .parse()
            .map_err(|_| VerifyError::MalformedHeader(SIGNATURE))?;
        // Other schemes' entries (v0) count toward the cap but are not compared.
        let v1 = items()
            .filter(|(k, _)| *k != "t")
            .map(|(k, v)| (k == "v1").then_some(v));
        let candidates = candidates(v1, Encoding::Hex, SIGNATURE)?;
        if !any_matches(
            &self.keys,
            &[ts_text.as_bytes(), b".", req.body],
            &candidates,
        ) {
            return Err(VerifyError::BadSignature);
        }
        check_timestamp(ts, req.now, self.tolerance, self.tolerance)
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
        pointer_text(json, "/id")
    }

    fn event_type(&self, _headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        pointer_text(json, "/type")
    }

    fn sign(&self, body: &[u8], now: i64) -> Signed {
        let ts = now.to_string();
        let mac = hmac_sha256(&self.keys[0], &[ts.as_bytes(), b".", body]);
        Signed {
            headers: vec![(SIGNATURE.into(), format!("t={ts},v1={}", hex::encode(mac)))],
            path_token: None,
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![SIGNATURE.into()]
    }
}
