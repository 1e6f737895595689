//! Pluggy: a shared secret sent back in a custom header chosen at registration
//! (default `X-Webhook-Secret`), compared in constant time.

use actix_web::http::header::{HeaderMap, HeaderName};
use serde_json::Value;

use super::{any_secret_eq, pointer_text, Inbound, Signed, Verifier, VerifyError};

const DEFAULT_HEADER: &str = "x-webhook-secret";

/// Verifier for Pluggy's secret-header recipe.
pub struct Pluggy {
    secrets: Vec<String>,
    header: &'static str,
    header_list: [&'static str; 1],
}

impl Pluggy {
    /// A verifier expecting one of `secrets` in `header` (default `X-Webhook-Secret`).
    pub fn new(secrets: Vec<String>, header: Option<String>) -> Result<Self, String> {
        let name = header
            .unwrap_or_else(|| DEFAULT_HEADER.to_string())
            .to_ascii_lowercase();
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("signature_header {name:?} is not a valid header name"))?;
        // Leaked once per source at start-up so VerifyError can name the header statically.
        let header: &'static str = Box::leak(name.into_boxed_str());
        Ok(Pluggy {
            secrets,
            header,
            header_list: [header],
        })
    }
}

impl Verifier for Pluggy {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let provided = req
            .headers
            .get(self.header)
            .ok_or(VerifyError::MissingHeader(self.header))?
            .to_str()
            .map_err(|_| VerifyError::BadSignature)?;
        if any_secret_eq(&self.secrets, provided) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
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
        pointer_text(json, "/eventId")
    }

    fn event_type(&self, _headers: &HeaderMap, json: Option<&Value>) -> Option<String> {
        pointer_text(json, "/event")
    }

    fn sign(&self, _body: &[u8], _now: i64) -> Signed {
        Signed {
            headers: vec![(self.header.to_string(), self.secrets[0].clone())],
            path_token: None,
        }
    }

    fn secret_headers(&self) -> &[&str] {
        &self.header_list
    }
}
