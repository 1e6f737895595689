//! `GET /api/sources`: the configured sources, without secrets.

use actix_web::{web, HttpResponse};
use std::collections::HashMap;

use serde_json::{json, Value};

use super::{Admin, AdminState};
use crate::source::Source;
use crate::verify::Kind;

/// The last recovery from the audit trail of a source (see the `recovery` module), or null
/// when it never had one or Redis cannot say.
async fn last_recovery(state: &AdminState, source: &Source) -> Value {
    let Ok(mut conn) = state.redis.get().await else {
        return Value::Null;
    };
    let fields: redis::RedisResult<HashMap<String, String>> = redis::cmd("HGETALL")
        .arg(&source.keys.recovery)
        .query_async(&mut *conn)
        .await;
    match fields {
        Ok(f) if !f.is_empty() => {
            let number = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            json!({
                "at_ms": number("at_ms"),
                "requeued": number("requeued"),
                "remembered": number("remembered"),
                "replica": f.get("replica").cloned().unwrap_or_default(),
            })
        }
        _ => Value::Null,
    }
}

pub(super) async fn list(_: Admin, state: web::Data<AdminState>) -> HttpResponse {
    let sources = state.sources.sorted();
    let mut recoveries = Vec::with_capacity(sources.len());
    for s in &sources {
        recoveries.push(last_recovery(&state, s).await);
    }
    let body: Vec<_> = sources
        .iter()
        .zip(recoveries)
        .map(|(s, recovered)| {
            let c = &s.config;
            let tokened = c.path_token.is_some() || c.kind == Kind::Token;
            json!({
                "name": c.name,
                "kind": c.kind.as_str(),
                "path": if tokened { format!("/webhooks/{}/<token>", c.name) } else { format!("/webhooks/{}", c.name) },
                "secrets": c.secrets.len(),
                "tolerance_seconds": c.tolerance_seconds,
                "dedup_ttl_seconds": c.dedup_ttl_seconds,
                "max_body_bytes": c.max_body_bytes,
                "idempotency_key": c.idempotency_key.as_ref().map(|k| k.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                "priority": c.priority,
                "retry": { "max_attempts": c.retry.max_attempts, "base_delay_ms": c.retry.base_delay_ms, "max_delay_ms": c.retry.max_delay_ms },
                "circuit": { "failure_threshold": c.circuit.failure_threshold, "open_seconds": c.circuit.open_seconds },
                "destinations": c.destinations.iter().map(|d| json!({
                    "name": d.name,
                    "url": d.url,
                    "timeout_ms": d.timeout_ms,
                    "signed": d.secret.is_some(),
                    "rate_limit_per_second": d.rate_limit_per_second,
                    "max_in_flight": d.max_in_flight,
                    "event_types": (!d.filter.event_types().is_empty()).then(|| d.filter.event_types()),
                    "filter": (d.filter.needs_payload()).then(|| d.filter.payload_conditions()),
                    "forward_headers": d.forward_headers,
                    "ordering_key": d.ordering.as_ref().map(|o| o.key.to_string()),
                    "on_dead": d.ordering.as_ref().map(|o| o.on_dead.to_string()),
                })).collect::<Vec<_>>(),
                "recovered_from_audit": recovered,
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "config_generation": state.sources.generation(),
        "sources": body
    }))
}
