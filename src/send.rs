//! `hookgate send`: signs a body the way a source's sender would and posts it.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::SourceConfig;
use crate::verify;

/// A request signed as the sender would sign it.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// `/webhooks/{source}` or `/webhooks/{source}/{token}`.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// Signs `body` for `source` at unix time `now`.
pub fn sign(source: &SourceConfig, body: &[u8], now: i64) -> Result<SignedRequest, String> {
    let verifier = verify::build(source)?;
    let signed = verifier.sign(body, now);
    let token = signed
        .path_token
        .or_else(|| source.path_token.as_ref().map(|t| t.expose().to_string()));
    let path = match token {
        Some(t) => format!("/webhooks/{}/{t}", source.name),
        None => format!("/webhooks/{}", source.name),
    };
    Ok(SignedRequest {
        path,
        headers: signed.headers,
    })
}

/// The current unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A plausible body for any kind, unique per `n`: it carries every field the kinds key on.
pub fn sample_body(n: u64) -> Vec<u8> {
    serde_json::json!({
        "event": "message_created",
        "eventId": format!("evt-{n}"),
        "id": format!("evt-{n}"),
        "event_id": format!("evt-{n}"),
        "type": "hookgate.test",
        "hook_action": "on_create_lead",
        "account": { "id": 1 },
        "attributes": { "updated_at": "2026-11-22T00:00:00Z" },
        "data": { "n": n, "text": "hello from hookgate" }
    })
    .to_string()
    .into_bytes()
}

/// Posts a signed body with awc and returns the status and response body.
pub async fn post(
    base_url: &str,
    signed: &SignedRequest,
    body: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<(u16, String)> {
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .finish();
    let url = format!("{}{}", base_url.trim_end_matches('/'), signed.path);
    let mut req = client
        .post(&url)
        .insert_header(("content-type", content_type));
    for (k, v) in &signed.headers {
        req = req.insert_header((k.as_str(), v.as_str()));
    }
    let mut res = req
        .send_body(body)
        .await
        .map_err(|e| anyhow::anyhow!("POST {url} failed: {e}"))?;
    let bytes = res
        .body()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer failed: {e}"))?;
    Ok((
        res.status().as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}
