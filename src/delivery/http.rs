//! One delivery attempt over HTTP with awc, and what its answer means.

use std::time::{Duration, Instant, SystemTime};

use awc::error::SendRequestError;
use futures_util::StreamExt;

use crate::config::DestinationConfig;
use crate::event::QueuedEvent;
use crate::retry;
use crate::routing::ForwardHeaders;
use crate::verify::standard_webhooks;

/// How much of a failed answer is kept for the dead letter and the audit trail.
const KEEP_RESPONSE: usize = 1024;

/// What an attempt's answer means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// Worth trying again: timeouts, connection errors, 408, 429, 5xx.
    Retry {
        reason: String,
        /// The destination's `Retry-After`, when it gave one.
        after: Option<Duration>,
        /// Whether this failure counts toward opening the circuit (429 does not: the
        /// destination is up and asked us to slow down).
        trips_circuit: bool,
    },
    /// Trying again cannot help: 410 and other 4xx, redirects.
    Permanent { reason: String },
}

/// One attempt's result.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<u16>,
    pub duration: Duration,
    pub verdict: Verdict,
    /// The start of a failed answer's body.
    pub response: String,
}

/// The HTTP client of one destination: its own connection pool, sized to its in-flight
/// limit, so that a hanging destination cannot take connections from another.
pub fn client(dest: &DestinationConfig) -> awc::Client {
    let timeout = Duration::from_millis(dest.timeout_ms);
    awc::Client::builder()
        .connector(
            awc::Connector::new()
                .limit(dest.max_in_flight)
                .timeout(timeout.min(Duration::from_secs(5))),
        )
        .timeout(timeout)
        .disable_redirects()
        .add_default_header((
            "user-agent",
            concat!("hookgate/", env!("CARGO_PKG_VERSION")),
        ))
        .finish()
}

/// Posts the event to the destination once.
pub async fn attempt(
    client: &awc::Client,
    dest: &DestinationConfig,
    forward: &ForwardHeaders,
    signing_key: Option<&[u8]>,
    source: &str,
    event: &QueuedEvent,
    attempt: u32,
) -> Attempt {
    let now = crate::send::unix_now();
    let content_type = if event.content_type.is_empty() {
        "application/octet-stream"
    } else {
        event.content_type.as_str()
    };
    let mut req = client.post(&dest.url);
    // The sender's own headers first: ours below replace any of the same name.
    for (name, value) in forward.select(&event.headers) {
        req = req.insert_header((name, value));
    }
    req = req
        .insert_header(("content-type", content_type))
        .insert_header(("webhook-id", event.id.as_str()))
        .insert_header(("webhook-timestamp", now.to_string()))
        .insert_header(("hookgate-source", source))
        .insert_header(("hookgate-attempt", attempt.to_string()));
    if let Some(key) = signing_key {
        let sig = standard_webhooks::signature(key, &event.id, now, &event.body);
        req = req.insert_header(("webhook-signature", sig));
    }
    let started = Instant::now();
    let sent = req.send_body(event.body.clone()).await;
    let mut res = match sent {
        Ok(res) => res,
        Err(e) => {
            let reason = match e {
                SendRequestError::Timeout => format!("timed out after {} ms", dest.timeout_ms),
                other => format!("connection failed: {other}"),
            };
            return Attempt {
                status: None,
                duration: started.elapsed(),
                verdict: Verdict::Retry {
                    reason,
                    after: None,
                    trips_circuit: true,
                },
                response: String::new(),
            };
        }
    };
    let status = res.status();
    let code = status.as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::retry_after(v, SystemTime::now()));
    // Read (some of) the answer so the connection can be reused and failures explained.
    let mut kept = Vec::new();
    let read = async {
        while let Some(chunk) = res.next().await {
            let Ok(chunk) = chunk else { break };
            if kept.len() < KEEP_RESPONSE {
                kept.extend_from_slice(&chunk[..chunk.len().min(KEEP_RESPONSE - kept.len())]);
            }
        }
    };
    let _ = actix_web::rt::time::timeout(Duration::from_millis(dest.timeout_ms), read).await;
    let duration = started.elapsed();
    let verdict = match code {
        200..=299 => Verdict::Delivered,
        429 => Verdict::Retry {
            reason: "429 too many requests".into(),
            after: retry_after,
            trips_circuit: false,
        },
        408 | 500..=599 | 100..=199 => Verdict::Retry {
            reason: format!("{code} {}", status.canonical_reason().unwrap_or("")),
            after: if code == 503 { retry_after } else { None },
            trips_circuit: true,
        },
        410 => Verdict::Permanent {
            reason: "410 gone".into(),
        },
        _ => Verdict::Permanent {
            reason: format!("{code} {}", status.canonical_reason().unwrap_or("")),
        },
    };
    Attempt {
        status: Some(code),
        duration,
        verdict,
        response: if code < 300 {
            String::new()
        } else {
            String::from_utf8_lossy(&kept).into_owned()
        },
    }
}
