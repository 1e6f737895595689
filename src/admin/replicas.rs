//! `GET /api/replicas`: every replica's Redis circuit, spool and configuration generation, as
//! each last reported it (see `replicas`).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{redis_down, Admin, AdminState};
use crate::error::ApiError;
use crate::replicas;

pub(super) async fn list(_: Admin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.redis.get().await.map_err(redis_down)?;
    let all = replicas::list(&mut *conn, &state.key_prefix)
        .await
        .map_err(redis_down)?;
    Ok(HttpResponse::Ok().json(json!({ "replicas": all })))
}
