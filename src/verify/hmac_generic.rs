//! Generic HMAC-SHA256 over the raw body: header name, prefix and hex/base64 encoding are
//! configured per source.

use actix_web::http::header::{HeaderMap, HeaderName};
use serde_json::Value;

use super::{
    any_matches, candidates, hmac_sha256, keys, Encoding, Inbound, Signed, Verifier, VerifyError,
};

/// Verifier for senders with a plain HMAC-of-body header.
pub struct GenericHmac {
    keys: Vec<Vec<u8>>,
    header: &'static str,
    prefix: String,
    encoding: Encoding,
}

impl GenericHmac {
    /// A verifier reading `prefix + encoded HMAC` from `header`.
    pub fn new(
        secrets: Vec<String>,
        header: Option<String>,
        prefix: String,
        encoding: Encoding,
    ) -> Result<Self, String> {
        let name = header
            .ok_or_else(|| "signature_header is required for kind hmac".to_string())?
            .to_ascii_lowercase();
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("signature_header {name:?} is not a valid header name"))?;
        Ok(GenericHmac {
            keys: keys(&secrets),
            // Leaked once per source at start-up so VerifyError can name the header statically.
            header: Box::leak(name.into_boxed_str()),
            prefix,
            encoding,
        })
    }
}

impl Verifier for GenericHmac {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), VerifyError> {
        let value = req
            .headers
            .get(self.header)
            .ok_or(VerifyError::MissingHeader(self.header))?
            .to_str()
            .map_err(|_| VerifyError::MalformedHeader(self.header))?
            .trim();
        let encoded = value
            .strip_prefix(self.prefix.as_str())
            .ok_or(VerifyError::MalformedHeader(self.header))?;
        let sig = candidates([Some(encoded)], self.encoding, self.header)?;
        if any_matches(&self.keys, &[req.body], &sig) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
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

    fn sign(&self, body: &[u8], _now: i64) -> Signed {
        let mac = hmac_sha256(&self.keys[0], &[body]);
        Signed {
            headers: vec![(
                self.header.to_string(),
                format!("{}{}", self.prefix, self.encoding.encode(&mac)),
            )],
            path_token: None,
        }
    }

    fn signature_headers(&self) -> Vec<String> {
        vec![self.header.to_string()]
    }
}
