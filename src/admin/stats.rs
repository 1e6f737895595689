//! `GET /api/queue/stats`: per source `waiting`, `active`, `completed`, `failed`, `delayed`
//! and a `summary` of totals, shaped like the queue stats of the systems hookgate replaces.

use actix_web::{web, HttpResponse};
use redis::streams::StreamInfoGroupsReply;
use serde::Serialize;
use serde_json::{json, Map};

use super::{redis_down, Admin, AdminState};
use crate::circuit::now_ms;
use crate::error::ApiError;
use crate::queue::{self, EntryId};

/// One queue's figures (a source, or one destination of it).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct QueueFigures {
    /// Accepted, not read by the destination's workers yet.
    pub waiting: u64,
    /// Read and being delivered (pending in the consumer group).
    pub active: u64,
    /// Delivered (2xx).
    pub completed: u64,
    /// Ended in the dead-letter stream (a counter, like `completed`).
    pub failed: u64,
    /// Parked for a later attempt (backoff, or an open circuit).
    pub delayed: u64,
}

impl QueueFigures {
    fn add(&mut self, o: &QueueFigures) {
        self.waiting += o.waiting;
        self.active += o.active;
        self.completed += o.completed;
        self.failed += o.failed;
        self.delayed += o.delayed;
    }
}

async fn groups(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> redis::RedisResult<StreamInfoGroupsReply> {
    match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await
    {
        Err(e) if e.to_string().contains("no such key") => Ok(StreamInfoGroupsReply::default()),
        other => other,
    }
}

pub(super) async fn queue_stats(
    _: Admin,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let mut queues = Map::new();
    let mut summary = QueueFigures::default();
    let mut sources: Vec<_> = state.sources.iter().collect();
    sources.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    for s in sources {
        let mut total = QueueFigures::default();
        let mut per_destination = Map::new();
        let mut figures = Vec::new();
        // Counters first, groups second: settling acknowledges and counts in one step, so
        // whatever is counted done here is no longer seen pending below.
        for d in &s.config.destinations {
            let keys = s.keys.destination(&d.name);
            let (delayed, completed, failed): (u64, Option<u64>, Option<u64>) = redis::pipe()
                .cmd("ZCARD")
                .arg(&keys.retry_schedule)
                .cmd("GET")
                .arg(&keys.delivered)
                .cmd("GET")
                .arg(&keys.dead)
                .query_async(&mut *conn)
                .await
                .map_err(redis_down)?;
            figures.push(QueueFigures {
                delayed,
                completed: completed.unwrap_or(0),
                failed: failed.unwrap_or(0),
                ..QueueFigures::default()
            });
        }
        let main = groups(&mut *conn, &s.keys.stream)
            .await
            .map_err(redis_down)?;
        for (d, mut f) in s.config.destinations.iter().zip(figures) {
            let keys = s.keys.destination(&d.name);
            let retry = groups(&mut *conn, &keys.retry_stream)
                .await
                .map_err(redis_down)?;
            for info in [&main, &retry] {
                if let Some(g) = info.groups.iter().find(|g| g.name == keys.group) {
                    f.waiting += g.lag.unwrap_or(0) as u64;
                    f.active += g.pending as u64;
                }
            }
            total.add(&f);
            per_destination.insert(d.name.clone(), json!(f));
        }
        summary.add(&total);
        let mut entry = serde_json::to_value(total).unwrap_or_default();
        entry["destinations"] = serde_json::Value::Object(per_destination);
        queues.insert(s.config.name.clone(), entry);
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "data": {
            "queues": queues,
            "summary": {
                "totalWaiting": summary.waiting,
                "totalActive": summary.active,
                "totalCompleted": summary.completed,
                "totalFailed": summary.failed,
                "totalDelayed": summary.delayed,
            }
        }
    })))
}

/// Options of `POST /api/queue/clean`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct CleanQuery {
    /// Dead letters older than this are removed (default 7 days).
    dead_older_than_seconds: Option<u64>,
}

/// Trims acknowledged entries from every source stream now (the workers also do it
/// periodically) and removes dead letters older than the retention.
pub(super) async fn clean(
    _: Admin,
    query: web::Query<CleanQuery>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let retention_ms = query.dead_older_than_seconds.unwrap_or(7 * 86_400) * 1000;
    let dead_floor = EntryId(now_ms().saturating_sub(retention_ms), 0);
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let mut out = Map::new();
    let (mut total_entries, mut total_dead) = (0u64, 0u64);
    let mut sources: Vec<_> = state.sources.iter().collect();
    sources.sort_by(|a, b| a.config.name.cmp(&b.config.name));
    for s in sources {
        let groups: Vec<String> = s
            .config
            .destinations
            .iter()
            .map(|d| s.keys.destination(&d.name).group)
            .collect();
        let entries = if groups.is_empty() {
            0
        } else {
            queue::trim_acknowledged(&mut *conn, &s.keys.stream, &groups)
                .await
                .map_err(redis_down)?
        };
        let dead: u64 = redis::cmd("XTRIM")
            .arg(&s.keys.dead)
            .arg("MINID")
            .arg(dead_floor.to_string())
            .query_async(&mut *conn)
            .await
            .map_err(redis_down)?;
        total_entries += entries;
        total_dead += dead;
        out.insert(
            s.config.name.clone(),
            json!({ "trimmed_entries": entries, "removed_dead_letters": dead }),
        );
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "data": { "sources": out, "trimmed_entries": total_entries, "removed_dead_letters": total_dead }
    })))
}
