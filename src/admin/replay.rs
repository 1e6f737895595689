//! Replays: `POST /api/events/{id}/replay`, `POST /api/events/replay` (every event matching a
//! filter, no cap, in the background) and `GET /api/replays/{id}` (its progress, kept in
//! Redis so that any replica can answer).
//!
//! A replay keeps the event's id (`webhook-id`), so a receiver that de-duplicates sees it as
//! the same delivery. With `new_id` each replayed copy is a new event instead: a fresh UUIDv7
//! id received now, with the original's key, type, headers and payload, and the original's id
//! in its stream entry's [`REPLAY_OF`] field.

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

// Stream entry fields of a copy replayed with `new_id`: the id of the event it copies, and
// the one destination it is for (the others' workers treat the entry as filtered).
use crate::event::{ONLY_FIELD as ONLY, REPLAY_OF_FIELD as REPLAY_OF};

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
    /// Replay as a new event with a fresh id (default: keep the event's id).
    #[serde(default)]
    new_id: bool,
}

/// Where a replayed entry goes.
#[derive(Debug, PartialEq)]
struct Target {
    /// The stream it is added to.
    stream: String,
    /// The destination it is for, or "all", as the answer names it.
    label: String,
    /// The [`ONLY`] field of the entry: set when a source stream entry is for one destination.
    only: Option<String>,
}

/// Where a replay of the event with idempotency key `key` goes: its partition's source stream
/// (every destination), or, for one destination, that destination's retry stream there (only
/// its group reads it). A new event for one destination goes to the source stream too, marked
/// [`ONLY`] for it: only the audit consumer's reading of the source stream gives it a row.
fn target(
    source: &Source,
    key: &str,
    destination: Option<&str>,
    new_id: bool,
) -> Result<Target, ApiError> {
    let partition = source.partition_of(key);
    match destination {
        Some(d) if !source.config.destinations.iter().any(|x| x.name == d) => {
            Err(ApiError::NotFoundWhat(format!(
                "source {} has no destination {d:?}",
                source.config.name
            )))
        }
        Some(d) if new_id => Ok(Target {
            stream: partition.stream.clone(),
            label: d.to_string(),
            only: Some(d.to_string()),
        }),
        Some(d) => Ok(Target {
            stream: partition.destination(d).retry_stream,
            label: d.to_string(),
            only: None,
        }),
        None => Ok(Target {
            stream: partition.stream.clone(),
            label: "all".to_string(),
            only: None,
        }),
    }
}

/// A fresh event id and its arrival time in unix ms, taken from the id itself: lookups bound
/// the partitions they read by the id's time (`partitions::arrival_window`), so the two must
/// agree.
fn fresh_id() -> (Uuid, i64) {
    let id = Uuid::now_v7();
    let ms = id.get_timestamp().map_or_else(
        || ms_of_time(OffsetDateTime::now_utc()),
        |t| {
            let (secs, nanos) = t.to_unix();
            secs as i64 * 1000 + i64::from(nanos / 1_000_000)
        },
    );
    (id, ms)
}

/// The identity of a replayed copy: the event's own, or a new event's.
#[derive(Debug)]
struct Replayed {
    /// Its id (`webhook-id` on delivery).
    id: Uuid,
    /// Its arrival time, unix ms.
    received_at_ms: i64,
    /// The event it copies, when it is a new event.
    replay_of: Option<Uuid>,
}

impl Replayed {
    /// A copy of `ev`: a new event when `new_id`, else the event itself.
    fn of(ev: &Stored, new_id: bool) -> Replayed {
        if new_id {
            let (id, received_at_ms) = fresh_id();
            Replayed {
                id,
                received_at_ms,
                replay_of: Some(ev.id),
            }
        } else {
            Replayed {
                id: ev.id,
                received_at_ms: ms_of_time(ev.received_at),
                replay_of: None,
            }
        }
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

/// The XADD that queues `copy` of an event to `target`. A copy that keeps the event's id has
/// the same `webhook-id` as the first time.
fn requeue(target: &Target, ev: &Stored, copy: &Replayed, payload: &[u8]) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&target.stream)
        .arg("*")
        .arg("id")
        .arg(copy.id.to_string())
        .arg("key")
        .arg(&ev.idempotency_key)
        .arg("type")
        .arg(ev.event_type.as_deref().unwrap_or(""))
        .arg("ts")
        .arg(copy.received_at_ms)
        .arg("ct")
        .arg(ev.content_type.as_deref().unwrap_or(""))
        .arg("hdr")
        .arg(ev.headers.to_string())
        .arg("body")
        .arg(payload)
        .arg("attempt")
        .arg(1);
    if let Some(original) = copy.replay_of {
        cmd.arg(REPLAY_OF).arg(original.to_string());
    }
    if let Some(only) = &target.only {
        cmd.arg(ONLY).arg(only);
    }
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
    let to = target(
        &source,
        &ev.idempotency_key,
        query.destination.as_deref(),
        query.new_id,
    )?;
    let copy = Replayed::of(&ev, query.new_id);
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let stream_id: String = requeue(&to, &ev, &copy, &payload)
        .query_async(&mut *conn)
        .await
        .map_err(redis_down)?;
    source.wake();
    let mut answer = json!({
        "status": "queued",
        "id": copy.id,
        "stream_id": stream_id,
        "destination": to.label,
    });
    match copy.replay_of {
        Some(original) => {
            log::info!(
                "event {original} of source {} replayed to {} as new event {}",
                ev.source,
                to.label,
                copy.id
            );
            answer["replay_of"] = json!(original);
        }
        None => log::info!(
            "event {id} of source {} replayed to {}",
            ev.source,
            to.label
        ),
    }
    Ok(HttpResponse::Accepted().json(answer))
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
    /// Replay each event as a new event with a fresh id.
    #[serde(default)]
    new_id: bool,
}

/// What a bulk replay does with each event it replays.
#[derive(Debug)]
struct BulkOptions {
    /// Only to this destination.
    destination: Option<String>,
    /// As new events.
    new_id: bool,
    /// Only events older than this id: the bulk replay's own, made before it counted them.
    /// With `new_id` the copies it makes are new events matching the filter, with larger ids
    /// (`Uuid::now_v7` is ordered within a process); without this bound it would replay its
    /// own copies, forever.
    before: Option<Uuid>,
}

impl BulkReplay {
    /// The filter the request asks for; refuses a request that names none without `all`.
    fn into_parts(self) -> Result<(Filter, Option<String>, bool), ApiError> {
        let filter = Filter {
            source: self.source,
            status: self.status,
            since: self.since,
            until: self.until,
            key: None,
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
            _ => Ok((filter, self.destination, self.new_id)),
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
    let (filter, destination, new_id) = body.into_inner().into_parts()?;
    if let (Some(d), Some(s)) = (&destination, &filter.source) {
        let source = state
            .sources
            .get(s)
            .ok_or_else(|| ApiError::UnknownSource(s.clone()))?;
        target(&source, "", Some(d), new_id)?;
    } else if destination.is_some() {
        return Err(ApiError::BadRequest("destination needs a source".into()));
    }
    let description = json!({
        "filter": &filter.describe(),
        "destination": destination,
        "new_id": new_id,
    });
    let filter = Arc::new(filter.parse()?);
    // Made before counting: with new_id, the events to replay are those older than it.
    let id = Uuid::now_v7();
    let options = BulkOptions {
        destination,
        new_id,
        before: new_id.then_some(id),
    };
    let counting = filter.clone();
    let before = options.before;
    let total: i64 = with_pg(&state.postgres, move |conn| {
        let mut q = counting.query();
        if let Some(before) = before {
            q = q.filter(e::id.lt(before));
        }
        q.count().get_result(conn)
    })
    .await?;
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
    actix_web::rt::spawn(run_bulk(state.clone(), id, filter, options, key));
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
    options: BulkOptions,
    key: String,
) {
    let mut after: Option<Uuid> = None;
    let (mut done, mut skipped) = (0u64, 0u64);
    let outcome: Result<(), String> = async {
        let before = options.before;
        loop {
            let page_filter = filter.clone();
            let (rows, mut bodies) = with_pg(&state.postgres, move |conn| {
                let mut q = page_filter.query().select(Stored::as_select());
                if let Some(after) = after {
                    q = q.filter(e::id.gt(after));
                }
                if let Some(before) = before {
                    q = q.filter(e::id.lt(before));
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
                let to = target(
                    &source,
                    &ev.idempotency_key,
                    options.destination.as_deref(),
                    options.new_id,
                );
                match to {
                    Ok(to) => {
                        let copy = Replayed::of(ev, options.new_id);
                        pipes
                            .entry(to.stream.clone())
                            .or_default()
                            .add_command(requeue(&to, ev, &copy, &payload))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigOrigin, Settings};
    use crate::partition_layout::Layout;

    fn source() -> Source {
        let toml = r#"
[[sources]]
name = "orders"
kind = "github"
secrets = ["s"]
partitions = 4
[[sources.destinations]]
name = "app"
url = "http://127.0.0.1:1/app"
[[sources.destinations]]
name = "crm"
url = "http://127.0.0.1:1/crm"
"#;
        let settings = Settings::from_toml(toml, ConfigOrigin::Inline, &|_| None).expect("config");
        let config = settings.source("orders").expect("source").clone();
        Source::new(config, "hg", Layout::configured(4)).expect("source")
    }

    #[test]
    fn a_new_event_for_one_destination_goes_to_the_source_stream_marked_only_for_it() {
        let source = source();
        let stream = source.partition_of("k-1").stream.clone();
        let retry = source.partition_of("k-1").destination("crm").retry_stream;
        let kept = target(&source, "k-1", Some("crm"), false).expect("target");
        assert_eq!((kept.stream, kept.only), (retry, None));
        let fresh = target(&source, "k-1", Some("crm"), true).expect("target");
        assert_eq!(
            fresh,
            Target {
                stream: stream.clone(),
                label: "crm".into(),
                only: Some("crm".into())
            }
        );
        for new_id in [false, true] {
            let all = target(&source, "k-1", None, new_id).expect("target");
            assert_eq!(
                (all.stream, all.label, all.only),
                (stream.clone(), "all".into(), None)
            );
            assert!(matches!(
                target(&source, "k-1", Some("nope"), new_id),
                Err(ApiError::NotFoundWhat(_))
            ));
        }
    }

    #[test]
    fn a_fresh_id_and_its_arrival_time_agree() {
        let before = ms_of_time(OffsetDateTime::now_utc());
        let (id, ms) = fresh_id();
        let after = ms_of_time(OffsetDateTime::now_utc());
        assert_eq!(id.get_version_num(), 7);
        assert!(before <= ms && ms <= after, "{before} <= {ms} <= {after}");
        let (low, high) = partitions::arrival_window(id);
        let received = crate::event::time_of_ms(ms).expect("a time");
        assert_eq!(received, low + time::Duration::hours(1));
        assert!(received < high);
    }
}
