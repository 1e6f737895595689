//! The ingest route: `POST /webhooks/{source}[/{token}]`. Verify, key, hand to the Dispatcher,
//! answer in milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::Addr;
use actix_web::http::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::dispatch::{DispatchError, Dispatcher, Enqueue, Enqueued, NewEvent};
use crate::error::ApiError;
use crate::source::Source;
use crate::sources::Sources;
use crate::telemetry::{IngestStats, Outcome};
use crate::traces;
use crate::verify::{self, Inbound, Kind, VerifyError};

/// What the ingest route needs, shared by every worker.
pub struct IngestState {
    pub sources: Sources,
    pub stats: Arc<IngestStats>,
    pub enqueue_timeout: Duration,
}

/// The Dispatcher of the current worker thread.
pub struct WorkerDispatcher(pub Addr<Dispatcher>);

#[derive(Serialize)]
struct Accepted<'a> {
    status: &'a str,
    id: &'a str,
}

/// Registers the ingest routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/webhooks/{source}")
            .route(web::post().to(receive))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/webhooks/{source}/{token}")
            .route(web::post().to(receive_with_token))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<IngestState>,
    dispatcher: web::Data<WorkerDispatcher>,
) -> Result<HttpResponse, ApiError> {
    handle(req, path.into_inner(), None, payload, state, dispatcher).await
}

async fn receive_with_token(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<IngestState>,
    dispatcher: web::Data<WorkerDispatcher>,
) -> Result<HttpResponse, ApiError> {
    let (source, token) = path.into_inner();
    handle(req, source, Some(token), payload, state, dispatcher).await
}

async fn handle(
    req: HttpRequest,
    source_name: String,
    token: Option<String>,
    payload: web::Payload,
    state: web::Data<IngestState>,
    dispatcher: web::Data<WorkerDispatcher>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    // The built-in source of notifications takes no webhooks.
    let Some(source) = state
        .sources
        .get(&source_name)
        .filter(|s| !s.config.internal)
    else {
        let err = ApiError::UnknownSource(source_name);
        state
            .stats
            .record("unknown", Outcome::Rejected(err.code()), started.elapsed());
        return Err(err);
    };
    let mut event_type = None;
    let result = accept(
        &req,
        &source,
        token.as_deref(),
        payload,
        &state,
        &dispatcher,
        &mut event_type,
    )
    .await;
    let outcome = match &result {
        Ok(Reply::Enqueued(Enqueued::Queued { .. })) => Outcome::Queued,
        Ok(Reply::Enqueued(Enqueued::Duplicate { .. })) => Outcome::Duplicate,
        Ok(Reply::Enqueued(Enqueued::Spooled { .. })) => Outcome::Spooled,
        Ok(Reply::Challenge(_)) => Outcome::Rejected("challenge"),
        Err(e) => Outcome::Rejected(e.code()),
    };
    let elapsed = started.elapsed();
    state.stats.record(&source.config.name, outcome, elapsed);
    log::debug!(
        "webhook source={} type={} outcome={} ms={:.2}{}",
        source.config.name,
        event_type.as_deref().unwrap_or("-"),
        outcome.label(),
        elapsed.as_secs_f64() * 1000.0,
        match &result {
            Err(e) => format!(" error={e}"),
            Ok(_) => String::new(),
        }
    );
    match result? {
        Reply::Enqueued(Enqueued::Queued { id, .. }) => Ok(HttpResponse::Ok().json(Accepted {
            status: "queued",
            id: &id,
        })),
        Reply::Enqueued(Enqueued::Duplicate { id }) => Ok(HttpResponse::Ok().json(Accepted {
            status: "duplicate",
            id: &id,
        })),
        // A sender treats it like queued: it is on disk, and in Redis later.
        Reply::Enqueued(Enqueued::Spooled { id }) => Ok(HttpResponse::Ok().json(Accepted {
            status: "spooled",
            id: &id,
        })),
        Reply::Challenge(challenge) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "challenge": challenge })))
        }
    }
}

enum Reply {
    Enqueued(Enqueued),
    /// Slack's URL verification handshake: answered, not queued.
    Challenge(String),
}

async fn accept(
    req: &HttpRequest,
    source: &Arc<Source>,
    token: Option<&str>,
    payload: web::Payload,
    state: &IngestState,
    dispatcher: &WorkerDispatcher,
    event_type: &mut Option<String>,
) -> Result<Reply, ApiError> {
    let config = &source.config;
    let arrived = traces::now();
    // A token in the path is checked before the body is read: a wrong one costs us nothing.
    if config.kind != Kind::Token {
        match (&config.path_token, token) {
            (Some(expected), Some(given)) if verify::secret_eq(expected.expose(), given) => {}
            (Some(_), Some(_)) => return Err(VerifyError::BadToken.into()),
            (Some(_), None) => return Err(VerifyError::MissingToken.into()),
            (None, Some(_)) => return Err(ApiError::NotFound),
            (None, None) => {}
        }
    }
    let body = read_body(req.headers(), payload, config.max_body_bytes).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let inbound = Inbound {
        headers: req.headers(),
        body: &body,
        path_token: token,
        now: now_ms / 1000,
    };
    source.verifier.verify(&inbound)?;

    let json = parse_json(&body, source.needs_json())?;
    if let Some(json) = &json {
        source.verifier.verify_parsed(json, inbound.now)?;
        if config.kind == Kind::Slack
            && json.get("type").and_then(Value::as_str) == Some("url_verification")
        {
            let challenge = json
                .get("challenge")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Ok(Reply::Challenge(challenge.to_string()));
        }
    }
    let headers = req.headers();
    event_type.clone_from(&source.event_type(headers, json.as_ref()));
    let event = NewEvent {
        id: Uuid::now_v7(),
        key: source.idempotency_key(headers, json.as_ref(), &body),
        event_type: event_type.clone(),
        received_at_ms: now_ms,
        content_type: headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: stored_headers(headers, &source.redacted_headers),
        body: body.freeze(),
    };
    let event_id = event.id;
    let sent = dispatcher.0.send(Enqueue {
        source: source.clone(),
        event,
    });
    let enqueue_started = traces::now();
    match actix_web::rt::time::timeout(state.enqueue_timeout, sent).await {
        Ok(Ok(Ok(done))) => {
            let outcome = match &done {
                Enqueued::Queued { .. } => "queued",
                Enqueued::Duplicate { .. } => "duplicate",
                Enqueued::Spooled { .. } => "spooled",
            };
            traces::ingest(
                event_id,
                &config.name,
                arrived,
                (enqueue_started, traces::now()),
                outcome,
            );
            Ok(Reply::Enqueued(done))
        }
        Ok(Ok(Err(e))) => {
            log::warn!("enqueue failed for source {}: {e}", config.name);
            Err(ApiError::Unavailable(match e {
                DispatchError::Connection(_) => "Redis is unreachable".into(),
                DispatchError::Redis(_) => "Redis refused the write".into(),
                DispatchError::Spool(e) => format!("Redis is unavailable and {e}"),
                DispatchError::Stopped => "the dispatcher stopped".into(),
            }))
        }
        Ok(Err(mailbox)) => Err(ApiError::Unavailable(format!(
            "dispatcher unavailable: {mailbox}"
        ))),
        Err(_) => {
            log::warn!("enqueue timed out for source {}", config.name);
            Err(ApiError::Unavailable("Redis did not answer in time".into()))
        }
    }
}

/// Reads the body, refusing with 413 as soon as it exceeds `limit` (never reading past it).
async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses the body as JSON: required for JSON kinds (400 otherwise), opportunistic for others.
fn parse_json(body: &[u8], required: bool) -> Result<Option<Value>, ApiError> {
    let looks_like_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if !required && !looks_like_json {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(Some(v)),
        Err(e) if required => Err(ApiError::InvalidJson(e.to_string())),
        Err(_) => Ok(None),
    }
}

/// The request headers worth keeping for the audit trail, without credentials.
fn stored_headers(headers: &HeaderMap, redacted: &[String]) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        if redacted.iter().any(|r| r == name) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        match map.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                map.insert(name.to_string(), Value::String(value.to_string()));
            }
        }
    }
    Value::Object(map)
}
