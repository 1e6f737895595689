//! Replays: `POST /api/events/{id}/replay`, `POST /api/events/replay` (every event matching a
//! filter, no cap, in the background) and `GET /api/replays/{id}` (its progress, kept in
//! Redis so that any replica can answer).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::events::Filter;
use super::{redis_down, with_pg, Admin, AdminState};
use crate::audit::partitions;
use crate::audit::schema::{event_payloads as p, webhook_events as e};
use crate::error::ApiError;
use crate::event::ms_of_time;
use crate::source::Source;

/// Events read per page of a bulk replay.
const PAGE: i64 = 500;
/// How long a replay's progress is kept.
const PROGRESS_TTL_SECONDS: u64 = 7 * 86_400;

/// What a replay needs of an event's audit row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = e)]
struct Stored {
    id: Uuid,
    source: String,
    event_type: Option<String>,
    idempotency_key: String,
    received_at: OffsetDateTime,
    content_type: Option<String>,
    headers: Value,
}

/// Options of a replay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayQuery {
    /// Replay to this destination only (default: every destination of the source).
    destination: Option<String>,
}

/// The stream a replay of the event with idempotency key `key` goes to: its partition's
/// source stream (every destination) or one destination's retry stream there (only its
/// group reads it).
fn target(
    source: &Source,
    key: &str,
    destination: Option<&str>,
) -> Result<(String, String), ApiError> {
    let partition = source.partition_of(key);
    match destination {
        Some(d) if source.config.destinations.iter().any(|x| x.name == d) => {
            Ok((partition.destination(d).retry_stream, d.to_string()))
        }
        Some(d) => Err(ApiError::NotFoundWhat(format!(
            "source {} has no destination {d:?}",
            source.config.name
        ))),
        None => Ok((partition.stream.clone(), "all".to_string())),
    }
}

/// The payloads of `ids`, received between `low` and `high`: those still kept.
fn payloads(
    conn: &mut PgConnection,
    ids: &[Uuid],
    low: OffsetDateTime,
    high: OffsetDateTime,
) -> QueryResult<HashMap<Uuid, Vec<u8>>> {
    p::table
        .filter(p::event_id.eq_any(ids))
        .filter(p::received_at.between(low, high))
        .select((p::event_id, p::payload))
        .load::<(Uuid, Vec<u8>)>(conn)
        .map(|rows| rows.into_iter().collect())
}

/// The XADD that queues an event again. It keeps its id, so `webhook-id` is the same as the
/// first time.
fn requeue(stream: &str, ev: &Stored, payload: &[u8]) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream)
        .arg("*")
        .arg("id")
        .arg(ev.id.to_string())
        .arg("key")
        .arg(&ev.idempotency_key)
        .arg("type")
        .arg(ev.event_type.as_deref().unwrap_or(""))
        .arg("ts")
        .arg(ms_of_time(ev.received_at))
        .arg("ct")
        .arg(ev.content_type.as_deref().unwrap_or(""))
        .arg("hdr")
        .arg(ev.headers.to_string())
        .arg("body")
        .arg(payload)
        .arg("attempt")
        .arg(1);
    cmd
}

/// Queues one event again, whatever its status (replaying a delivered event is the
/// operator's explicit choice).
pub(super) async fn one(
    _: Admin,
    path: web::Path<Uuid>,
    query: web::Query<ReplayQuery>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let (low, high) = partitions::arrival_window(id);
    let (ev, payload) = with_pg(&state.postgres, move |conn| {
        let ev: Stored = e::table
            .filter(e::id.eq(id))
            .filter(e::received_at.between(low, high))
            .select(Stored::as_select())
            .first(conn)?;
        let payload = payloads(conn, &[id], low, high)?.remove(&id);
        Ok((ev, payload))
    })
    .await?;
    let payload = payload.ok_or_else(|| {
        ApiError::NotFoundWhat(format!(
            "the payload of event {id} is past audit.payload_retention_days: nothing to replay"
        ))
    })?;
    let source = state.sources.get(&ev.source).ok_or_else(|| {
        ApiError::NotFoundWhat(format!("source {} is no longer configured", ev.source))
    })?;
    let (stream, to) = target(source, &ev.idempotency_key, query.destination.as_deref())?;
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let stream_id: String = requeue(&stream, &ev, &payload)
        .query_async(&mut *conn)
        .await
        .map_err(redis_down)?;
    source.wake();
    log::info!("event {id} of source {} replayed to {to}", ev.source);
    Ok(HttpResponse::Accepted().json(json!({
        "status": "queued",
        "id": id,
        "stream_id": stream_id,
        "destination": to,
    })))
}

/// Body of `POST /api/events/replay`. Strict on purpose: a typo in a field name must not
/// widen the filter to every event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkReplay {
    /// Replay every event: the explicit form of "no filter".
    #[serde(default)]
    all: bool,
    source: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    destination: Option<String>,
}

impl BulkReplay {
    /// The filter the request asks for; refuses a request that names none without `all`.
    fn into_parts(self) -> Result<(Filter, Option<String>), ApiError> {
        let filter = Filter {
            source: self.source,
            status: self.status,
            since: self.since,
            until: self.until,
        };
        let filtered = filter.source.is_some()
            || filter.status.is_some()
            || filter.since.is_some()
            || filter.until.is_some();
        match (self.all, filtered) {
            (false, false) => Err(ApiError::InvalidBody(
                "name what to replay: a filter (source, status, since, until) or {\"all\": true}"
                    .into(),
            )),
            (true, true) => Err(ApiError::InvalidBody(
                "\"all\": true replays every event; leave it out to use a filter".into(),
            )),
            _ => Ok((filter, self.destination)),
        }
    }
}

fn progress_key(state: &AdminState, id: &Uuid) -> String {
    format!("{}:replay:{id}", state.key_prefix)
}

/// Starts replaying every event matching the filter; answers at once with the replay's id.
pub(super) async fn bulk(
    _: Admin,
    body: web::Json<BulkReplay>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let (filter, destination) = body.into_inner().into_parts()?;
    if let (Some(d), Some(s)) = (&destination, &filter.source) {
        let source = state
            .sources
            .get(s)
            .ok_or_else(|| ApiError::UnknownSource(s.clone()))?;
        target(source, "", Some(d))?;
    } else if destination.is_some() {
        return Err(ApiError::BadRequest("destination needs a source".into()));
    }
    let description = json!({ "filter": &filter.describe(), "destination": destination });
    let filter = Arc::new(filter.parse()?);
    let counting = filter.clone();
    let total: i64 = with_pg(&state.postgres, move |conn| {
        counting.query().count().get_result(conn)
    })
    .await?;
    let id = Uuid::now_v7();
    let key = progress_key(&state, &id);
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    redis::pipe()
        .cmd("HSET")
        .arg(&key)
        .arg("state")
        .arg("running")
        .arg("total")
        .arg(total)
        .arg("done")
        .arg(0)
        .arg("skipped")
        .arg(0)
        .arg("request")
        .arg(description.to_string())
        .arg("started_at")
        .arg(crate::circuit::now_ms())
        .ignore()
        .cmd("EXPIRE")
        .arg(&key)
        .arg(PROGRESS_TTL_SECONDS)
        .ignore()
        .query_async::<()>(&mut *conn)
        .await
        .map_err(redis_down)?;
    drop(conn);
    log::info!("replay {id} started: {total} events ({description})");
    actix_web::rt::spawn(run_bulk(state.clone(), id, filter, destination, key));
    Ok(HttpResponse::Accepted()
        .json(json!({ "replay_id": id, "total": total, "state": "running" })))
}

impl Filter {
    fn describe(&self) -> Value {
        json!({ "source": self.source, "status": self.status, "since": self.since, "until": self.until })
    }
}

/// Pages through the matching events in id order and queues each again, recording progress.
async fn run_bulk(
    state: web::Data<AdminState>,
    id: Uuid,
    filter: Arc<super::events::ParsedFilter>,
    destination: Option<String>,
    key: String,
) {
    let mut after: Option<Uuid> = None;
    let (mut done, mut skipped) = (0u64, 0u64);
    let outcome: Result<(), String> = async {
        loop {
            let page_filter = filter.clone();
            let (rows, mut bodies) = with_pg(&state.postgres, move |conn| {
                let mut q = page_filter.query().select(Stored::as_select());
                if let Some(after) = after {
                    q = q.filter(e::id.gt(after));
                }
                let rows: Vec<Stored> = q.order(e::id.asc()).limit(PAGE).load(conn)?;
                let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
                let times = rows.iter().map(|r| r.received_at);
                let bodies = match times.clone().min().zip(times.max()) {
                    Some((low, high)) => payloads(conn, &ids, low, high)?,
                    None => HashMap::new(),
                };
                Ok((rows, bodies))
            })
            .await
            .map_err(|e| e.to_string())?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = Some(last.id);
            // One pipeline per stream: on Redis Cluster a pipeline must stay in one slot.
            let mut pipes: BTreeMap<String, redis::Pipeline> = BTreeMap::new();
            let mut woken = Vec::new();
            for ev in &rows {
                let Some(source) = state.sources.get(&ev.source) else {
                    skipped += 1;
                    continue;
                };
                // Past audit.payload_retention_days: nothing to send.
                let Some(payload) = bodies.remove(&ev.id) else {
                    skipped += 1;
                    continue;
                };
                match target(source, &ev.idempotency_key, destination.as_deref()) {
                    Ok((stream, _)) => {
                        pipes
                            .entry(stream.clone())
                            .or_default()
                            .add_command(requeue(&stream, ev, &payload))
                            .ignore();
                        done += 1;
                        woken.push(source.clone());
                    }
                    Err(_) => skipped += 1,
                }
            }
            let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
            for pipe in pipes.values() {
                pipe.query_async::<()>(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            redis::cmd("HSET")
                .arg(&key)
                .arg("done")
                .arg(done)
                .arg("skipped")
                .arg(skipped)
                .query_async::<()>(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            for s in woken {
                s.wake();
            }
        }
    }
    .await;
    let (state_name, error) = match &outcome {
        Ok(()) => ("done", String::new()),
        Err(e) => ("failed", e.clone()),
    };
    if let Ok(mut conn) = state.redis.get().await {
        let _: redis::RedisResult<()> = redis::cmd("HSET")
            .arg(&key)
            .arg("state")
            .arg(state_name)
            .arg("error")
            .arg(&error)
            .arg("finished_at")
            .arg(crate::circuit::now_ms())
            .query_async(&mut *conn)
            .await;
    }
    log::info!("replay {id} {state_name}: {done} queued, {skipped} skipped {error}");
}

/// `GET /api/replays/{id}`: a replay's progress.
pub(super) async fn progress(
    _: Admin,
    path: web::Path<Uuid>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(progress_key(&state, &id))
        .query_async(&mut *conn)
        .await
        .map_err(redis_down)?;
    if fields.is_empty() {
        return Err(ApiError::NotFoundWhat(format!("no replay {id}")));
    }
    let num = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
    Ok(HttpResponse::Ok().json(json!({
        "replay_id": id,
        "state": fields.get("state"),
        "total": num("total"),
        "done": num("done"),
        "skipped": num("skipped"),
        "error": fields.get("error").filter(|e| !e.is_empty()),
        "request": fields.get("request").and_then(|r| serde_json::from_str::<Value>(r).ok()),
        "started_at_ms": num("started_at"),
        "finished_at_ms": num("finished_at"),
    })))
}
