//! `/health` (the process is up) and `/ready` (Redis and PostgreSQL reachable).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use diesel::connection::SimpleConnection;
use serde_json::json;

use crate::audit::PgPool;
use crate::queue::RedisPool;

/// Dependencies that `/ready` checks.
pub struct Readiness {
    pub redis: RedisPool,
    pub postgres: PgPool,
}

/// Registers the health routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(deps: web::Data<Readiness>) -> HttpResponse {
    let limit = Duration::from_secs(2);
    let redis = async {
        let mut conn = deps.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut *conn)
            .await
            .map_err(|e| e.to_string())
    };
    let redis = match actix_web::rt::time::timeout(limit, redis).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out".to_string()),
    };
    let pool = deps.postgres.clone();
    let postgres = web::block(move || -> Result<(), String> {
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        conn.batch_execute("SELECT 1").map_err(|e| e.to_string())
    });
    let postgres = match actix_web::rt::time::timeout(limit, postgres).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    let status = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let body = json!({
        "status": if redis.is_ok() && postgres.is_ok() { "ready" } else { "unavailable" },
        "redis": status(&redis),
        "postgres": status(&postgres),
    });
    if redis.is_ok() && postgres.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
