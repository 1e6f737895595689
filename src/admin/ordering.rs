//! The keys of ordered destinations held by a dead event (`on_dead = "block"`):
//! `GET /api/blocked` lists them; `POST /api/blocked/{source}/{destination}/discard` gives
//! up the dead event so that its key's next event goes. Replaying the dead event instead
//! (`POST /api/events/{id}/replay`) delivers it first and then releases its key.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{redis_down, Admin, AdminState};
use crate::error::ApiError;
use crate::queue;
use crate::source::{Source, SourceKeys};

/// `GET /api/blocked`: every blocked key, with the dead event holding it and how many
/// events wait behind it.
pub(super) async fn list(_: Admin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let mut out = Vec::new();
    let sources = state.sources.sorted();
    for s in sources {
        for d in s
            .config
            .destinations
            .iter()
            .filter(|d| d.ordering.is_some())
        {
            let keys = s.keys.destination(&d.name);
            let mut blocked: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(&keys.order_blocked)
                .query_async(&mut *conn)
                .await
                .map_err(redis_down)?;
            blocked.sort();
            for (key, event_id) in blocked {
                let waiting: u64 = redis::cmd("LLEN")
                    .arg(waiting_list(&keys.order_waiting_prefix, &key))
                    .query_async(&mut *conn)
                    .await
                    .map_err(redis_down)?;
                out.push(json!({
                    "source": s.config.name,
                    "destination": d.name,
                    "key": key,
                    "event_id": event_id,
                    "waiting": waiting,
                }));
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "blocked": out })))
}

/// The body of a discard: which key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Discard {
    key: String,
}

/// `POST /api/blocked/{source}/{destination}/discard`: the dead event stays in the dead
/// letters; its key's next event is delivered.
pub(super) async fn discard(
    _: Admin,
    path: web::Path<(String, String)>,
    body: web::Json<Discard>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let (source, destination) = path.into_inner();
    let s = ordered_destination(&state, &source, &destination)?;
    let keys = s.keys.destination(&destination);
    let key = body.into_inner().key;
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let discarded: Option<String> = redis::Script::new(queue::ORDER_DISCARD_LUA)
        .key(&keys.order_holds)
        .key(&keys.order_blocked)
        .key(&keys.retry_stream)
        .key(&keys.order_held)
        .key(waiting_list(&keys.order_waiting_prefix, &key))
        .arg(&keys.parked_prefix)
        .arg(&key)
        .invoke_async(&mut *conn)
        .await
        .map_err(redis_down)?;
    let Some(event_id) = discarded else {
        return Err(ApiError::NotFoundWhat(format!(
            "key {key:?} of {source}/{destination} is not blocked"
        )));
    };
    log::warn!(
        "{source}/{destination}: dead event {event_id} discarded by the admin API; key {key:?} moves on"
    );
    Ok(HttpResponse::Ok().json(json!({
        "status": "discarded",
        "source": source,
        "destination": destination,
        "key": key,
        "event_id": event_id,
    })))
}

/// The source, if `destination` is one of its ordered destinations.
fn ordered_destination(
    state: &AdminState,
    source: &str,
    destination: &str,
) -> Result<std::sync::Arc<Source>, ApiError> {
    let s = state
        .sources
        .get(source)
        .ok_or_else(|| ApiError::UnknownSource(source.to_string()))?;
    match s.config.destinations.iter().find(|d| d.name == destination) {
        Some(d) if d.ordering.is_some() => Ok(s),
        Some(_) => Err(ApiError::NotFoundWhat(format!(
            "destination {source}/{destination} has no ordering_key"
        ))),
        None => Err(ApiError::NotFoundWhat(format!(
            "source {source} has no destination {destination:?}"
        ))),
    }
}

fn waiting_list(prefix: &str, key: &str) -> String {
    format!("{prefix}{}", SourceKeys::waiting_suffix(key))
}
