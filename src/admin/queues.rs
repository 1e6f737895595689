//! `GET /api/queue/stats` (per source `waiting`, `active`, `completed`, `failed`, `delayed`
//! and a `summary` of totals, shaped like the queue stats of the systems hookgate replaces)
//! and `POST /api/queue/clean`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map};

use super::{redis_down, Admin, AdminState};
use crate::circuit::now_ms;
use crate::error::ApiError;
use crate::queue::{self, EntryId};
use crate::stats::{self, QueueFigures};

pub(super) async fn queue_stats(
    _: Admin,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let all = stats::collect(&mut *conn, &state.sources)
        .await
        .map_err(redis_down)?;
    let mut queues = Map::new();
    let mut summary = QueueFigures::default();
    for source in &all {
        let total = source.total();
        summary.add(&total);
        let mut entry = serde_json::to_value(total).unwrap_or_default();
        entry["destinations"] = serde_json::Value::Object(
            source
                .destinations
                .iter()
                .map(|d| (d.name.clone(), json!(d.figures)))
                .collect(),
        );
        queues.insert(source.name.clone(), entry);
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
                "totalFiltered": summary.filtered,
            }
        }
    })))
}

/// Options of `POST /api/queue/clean`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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
    let sources = state.sources.sorted();
    for s in sources {
        let (mut entries, mut dead) = (0u64, 0u64);
        for partition in s.lanes() {
            entries += queue::trim_settled(
                &mut *conn,
                &s.config.name,
                partition,
                &s.groups(),
                state.max_backlog,
            )
            .await
            .map_err(redis_down)?;
            let removed: u64 = redis::cmd("XTRIM")
                .arg(&partition.dead)
                .arg("MINID")
                .arg(dead_floor.to_string())
                .query_async(&mut *conn)
                .await
                .map_err(redis_down)?;
            dead += removed;
        }
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
