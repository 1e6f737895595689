//! `GET /api/circuits` and `POST /api/circuits/{source}/{destination}/reset`.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{redis_down, Admin, AdminState};
use crate::circuit::{self, CircuitStatus};
use crate::error::ApiError;

pub(super) async fn list(_: Admin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let mut out = Vec::new();
    let sources = state.sources.sorted();
    for s in sources {
        for d in &s.config.destinations {
            let keys = s.keys.destination(&d.name);
            let c = circuit::read(&mut *conn, &keys.circuit)
                .await
                .map_err(redis_down)?;
            out.push(json!({
                "source": s.config.name,
                "destination": d.name,
                "state": c.state,
                "failures": c.failures,
                "open_until_ms": (c.state != CircuitStatus::Closed).then_some(c.open_until_ms),
            }));
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "circuits": out })))
}

pub(super) async fn reset(
    _: Admin,
    path: web::Path<(String, String)>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let (source, destination) = path.into_inner();
    let s = state
        .sources
        .get(&source)
        .ok_or_else(|| ApiError::UnknownSource(source.clone()))?;
    if !s.config.destinations.iter().any(|d| d.name == destination) {
        return Err(ApiError::NotFoundWhat(format!(
            "source {source} has no destination {destination:?}"
        )));
    }
    let circuit_key = s.destination_keys(&s.keys, &destination).circuit;
    let schedules: Vec<String> = s
        .lanes()
        .iter()
        .map(|p| p.destination(&destination).retry_schedule)
        .collect();
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    circuit::reset(&mut *conn, &circuit_key, &schedules)
        .await
        .map_err(redis_down)?;
    s.wake();
    log::info!("circuit {source}/{destination} reset by the admin API");
    Ok(HttpResponse::Ok().json(
        json!({ "source": source, "destination": destination, "state": CircuitStatus::Closed }),
    ))
}
