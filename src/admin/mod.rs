//! The admin API under `/api/`: bearer-token auth, queue figures, events, replay, circuits.
//! Disabled (404) when no admin token is configured.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

use crate::audit::PgPool;
use crate::config::Secret;
use crate::error::ApiError;
use crate::queue::RedisPool;
use crate::sources::Sources;
use crate::verify::secret_eq;

mod circuits;
mod events;
mod latency;
mod ordering;
mod queues;
mod replay;
mod replicas;
mod sources;

/// What the admin routes need.
pub struct AdminState {
    pub token: Option<Secret>,
    /// Prefix of hookgate's Redis keys (replay progress lives under it).
    pub key_prefix: String,
    pub redis: RedisPool,
    pub postgres: PgPool,
    /// `audit.max_backlog`: past it a stream is trimmed beyond what the audit trail wrote.
    pub max_backlog: u64,
    pub sources: Sources,
}

/// Proof that the request carried the admin token; take it as a handler argument.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = req
            .app_data::<web::Data<AdminState>>()
            .and_then(|s| s.token.clone());
        let Some(token) = token else {
            // Disabled: the admin API does not exist.
            return ready(Err(ApiError::NotFound));
        };
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        ready(if secret_eq(token.expose(), given.trim()) {
            Ok(Admin)
        } else {
            Err(ApiError::AdminUnauthorized)
        })
    }
}

/// The OpenAPI document of the ingest and admin API (checked in, served as is).
pub const OPENAPI: &str = include_str!("openapi.json");

/// The dashboard: one page, no build step, no CDN; it asks for the admin token.
pub const DASHBOARD: &str = include_str!("dashboard.html");

async fn dashboard(state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    // Without a token the admin API, and so the dashboard, does not exist.
    if state.token.is_none() {
        return Err(ApiError::NotFound);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", DASHBOARD_CSP.as_str()))
        .insert_header(("X-Frame-Options", "DENY"))
        .body(DASHBOARD))
}

/// The dashboard's Content-Security-Policy: only its own inline script and style run, by
/// hash (no `'unsafe-inline'`), and no other site may frame it (clickjacking a replay).
static DASHBOARD_CSP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hash(DASHBOARD, "script"),
        inline_hash(DASHBOARD, "style")
    )
});

/// The CSP source of the page's one inline `<tag>` element: `'sha256-...'` of its text.
fn inline_hash(page: &str, tag: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let text = page
        .split_once(open.as_str())
        .and_then(|(_, rest)| rest.split_once(close.as_str()))
        .map_or("", |(inner, _)| inner);
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(dashboard))
        .route(
            "/api/openapi.json",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(OPENAPI)
            }),
        )
        .route("/api/sources", web::get().to(sources::list))
        .route("/api/queue/stats", web::get().to(queues::queue_stats))
        .route("/api/queue/clean", web::post().to(queues::clean))
        .route("/api/circuits", web::get().to(circuits::list))
        .route(
            "/api/circuits/{source}/{destination}/reset",
            web::post().to(circuits::reset),
        )
        .route("/api/replicas", web::get().to(replicas::list))
        .route("/api/latency", web::get().to(latency::list))
        .route("/api/blocked", web::get().to(ordering::list))
        .route(
            "/api/blocked/{source}/{destination}/discard",
            web::post().to(ordering::discard),
        )
        .route("/api/events", web::get().to(events::list))
        .route("/api/events/replay", web::post().to(replay::bulk))
        .route("/api/events/{id}", web::get().to(events::detail))
        .route("/api/events/{id}/replay", web::post().to(replay::one))
        .route("/api/replays/{id}", web::get().to(replay::progress));
}

/// Maps a Redis failure to the HTTP contract.
fn redis_down(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("Redis: {e}"))
}

/// Runs a blocking PostgreSQL query off the async threads.
async fn with_pg<T: Send + 'static>(
    pool: &PgPool,
    f: impl FnOnce(&mut diesel::PgConnection) -> diesel::QueryResult<T> + Send + 'static,
) -> Result<T, ApiError> {
    let pool = pool.clone();
    web::block(move || {
        let mut conn = pool
            .get()
            .map_err(|e| ApiError::Unavailable(format!("PostgreSQL: {e}")))?;
        f(&mut conn).map_err(|e| match e {
            diesel::result::Error::NotFound => ApiError::NotFoundWhat("no such event".into()),
            other => ApiError::Internal(format!("PostgreSQL: {other}")),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csp_names_the_hash_of_the_inline_script_and_style_and_nothing_unsafe() {
        let page = "<style>b{}</style><script>go()</script>";
        // printf 'go()' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            inline_hash(page, "script"),
            "'sha256-5KYv+PUboo5h+0+YAtGRPbwv5d/QxzHslP4YGnUaxRw='"
        );
        assert!(!DASHBOARD_CSP.contains("unsafe"));
        assert!(DASHBOARD_CSP.contains("frame-ancestors 'none'"));
        assert_eq!(
            DASHBOARD.matches("<script>").count(),
            1,
            "one inline script"
        );
        assert_eq!(DASHBOARD.matches("<style>").count(), 1, "one inline style");
    }
}
