//! `GET /api/latency`: each destination's delivery attempts over the last hour, with their
//! p50 and p99 duration, from the audit trail.

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};
use serde_json::json;

use super::{with_pg, Admin, AdminState};
use crate::error::ApiError;

/// The window, in seconds.
const WINDOW_SECONDS: i64 = 3_600;

/// Attempts made in the window, by source and destination. Attempts live in the partition of
/// their event's arrival: events that arrived up to a day before the window are read too.
const LATENCY_SQL: &str = r#"
SELECT e.source, a.destination, count(*) AS attempts,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms) AS p50_ms,
  percentile_cont(0.99) WITHIN GROUP (ORDER BY a.duration_ms) AS p99_ms
FROM delivery_attempts a
JOIN webhook_events e ON e.id = a.event_id AND e.received_at = a.received_at
WHERE a.attempted_at > now() - make_interval(secs => $1)
  AND a.received_at > now() - make_interval(secs => $1 + 86400)
GROUP BY e.source, a.destination
ORDER BY e.source, a.destination
"#;

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    destination: String,
    #[diesel(sql_type = BigInt)]
    attempts: i64,
    #[diesel(sql_type = Double)]
    p50_ms: f64,
    #[diesel(sql_type = Double)]
    p99_ms: f64,
}

pub(super) async fn list(_: Admin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let rows: Vec<Row> = with_pg(&state.postgres, |conn| {
        diesel::sql_query(LATENCY_SQL)
            .bind::<Double, _>(WINDOW_SECONDS as f64)
            .load(conn)
    })
    .await?;
    let destinations: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "source": r.source,
                "destination": r.destination,
                "attempts": r.attempts,
                "p50_ms": r.p50_ms.round(),
                "p99_ms": r.p99_ms.round(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "window_seconds": WINDOW_SECONDS,
        "destinations": destinations,
    })))
}
