//! Token: the secret is the last segment of `POST /webhooks/{source}/{token}`, for senders
//! that cannot sign at all.

use actix_web::http::header::HeaderMap;
use serde_json::Value;

use super::{any_secret_eq, Inbound, Signed, Verifier, VerifyError};

/// Verifier for URL-path tokens.
pub struct Token {
    secrets: Vec<String>,
}

impl Token {
    /// A verifier accepting any of `secrets` as the path token.
    pub fn new(secrets: Vec<String>) -> Self {
        Token { secrets }
    }
}

impl Verifier for Token {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let token = req.path_token.ok_or(VerifyError::MissingToken)?;
        if any_secret_eq(&self.secrets, token) {
            Ok(())
        } else {
            Err(VerifyError::BadToken)
        }
    }

    fn default_key(
        &self,
        _headers: &HeaderMap,
        _json: Option<&Value>,
        _body: &[u8],
    ) -> Option<String> {
        None
    }

    fn event_type(&self, _headers: &HeaderMap, _json: Option<&Value>) -> Option<String> {
        None
    }

    fn sign(&self, _body: &[u8], _now: i64) -> Signed {
        Signed {
            headers: Vec::new(),
            path_token: Some(self.secrets[0].clone()),
        }
    }
}
