//! `GET /api/events`, `GET /api/events/{id}` and `POST /api/events/{id}/replay`.

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{with_pg, Admin, AdminState};
use crate::audit::partitions;
use crate::audit::schema::{deliveries, delivery_attempts, event_payloads, webhook_events as e};
use crate::error::ApiError;
use crate::status::Status;

/// Filters of `GET /api/events` and of bulk replays.
#[derive(Debug, Default)]
pub(super) struct Filter {
    pub source: Option<String>,
    pub status: Option<String>,
    /// RFC 3339; received at or after.
    pub since: Option<String>,
    /// RFC 3339; received before.
    pub until: Option<String>,
    /// The idempotency key, exactly.
    pub key: Option<String>,
}

/// A [`Filter`] checked and parsed.
pub(super) struct ParsedFilter {
    source: Option<String>,
    status: Option<Status>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    key: Option<String>,
}

impl Filter {
    /// Checks the status name and parses the times.
    pub fn parse(self) -> Result<ParsedFilter, ApiError> {
        let status = self
            .status
            .as_deref()
            .map(str::parse::<Status>)
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("status {e}")))?;
        Ok(ParsedFilter {
            since: time_param("since", &self.since)?,
            until: time_param("until", &self.until)?,
            source: self.source,
            status,
            key: self.key,
        })
    }
}

impl ParsedFilter {
    /// The events matching the filter, as a boxed query to select from.
    pub fn query(&self) -> e::BoxedQuery<'static, diesel::pg::Pg> {
        let mut query = e::table.into_boxed();
        if let Some(source) = &self.source {
            query = query.filter(e::source.eq(source.clone()));
        }
        if let Some(status) = self.status {
            query = query.filter(e::status.eq(status.as_str()));
        }
        if let Some(since) = self.since {
            query = query.filter(e::received_at.ge(since));
        }
        if let Some(until) = self.until {
            query = query.filter(e::received_at.lt(until));
        }
        if let Some(key) = &self.key {
            query = query.filter(e::idempotency_key.eq(key.clone()));
        }
        query
    }
}

/// Query of `GET /api/events`. Strict: a misspelt filter must not list everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventQuery {
    source: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// The idempotency key, exactly.
    key: Option<String>,
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
}

fn time_param(name: &str, value: &Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                ApiError::BadRequest(format!(
                    "{name} must be an RFC 3339 time, such as 2026-11-22T10:00:00Z"
                ))
            })
        })
        .transpose()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// An event as the list shows it: the audit row without headers and payload.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = e)]
struct Summary {
    id: Uuid,
    source: String,
    event_type: Option<String>,
    idempotency_key: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    received_at: OffsetDateTime,
    delivered_at: Option<OffsetDateTime>,
}

fn summary_json(r: &Summary) -> Value {
    json!({
        "id": r.id,
        "source": r.source,
        "event_type": r.event_type,
        "idempotency_key": r.idempotency_key,
        "status": r.status,
        "attempts": r.attempts,
        "last_error": r.last_error,
        "received_at": rfc3339(r.received_at),
        "delivered_at": r.delivered_at.map(rfc3339),
    })
}

pub(super) async fn list(
    _: Admin,
    query: web::Query<EventQuery>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let filter = Filter {
        source: q.source,
        status: q.status,
        since: q.since,
        until: q.until,
        key: q.key,
    }
    .parse()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let cursor = q.cursor;
    let rows: Vec<Summary> = with_pg(&state.postgres, move |conn| {
        let mut query = filter.query().select(Summary::as_select());
        if let Some(cursor) = cursor {
            query = query.filter(e::id.lt(cursor));
        }
        // Ids are UUIDv7: ordering by id is ordering by arrival, and a stable cursor.
        query.order(e::id.desc()).limit(limit + 1).load(conn)
    })
    .await?;
    let more = rows.len() as i64 > limit;
    let page = &rows[..rows.len().min(limit as usize)];
    Ok(HttpResponse::Ok().json(json!({
        "events": page.iter().map(summary_json).collect::<Vec<_>>(),
        "next_cursor": if more { page.last().map(|r| r.id) } else { None },
    })))
}

type Full = (
    Summary,
    String,
    Option<String>,
    Value,
    i32,
    Option<Uuid>,
    Option<String>,
);
type DeliveryRow = (
    String,
    String,
    i32,
    Option<String>,
    Option<i32>,
    OffsetDateTime,
    Option<OffsetDateTime>,
);
type AttemptRow = (
    String,
    i32,
    Option<i32>,
    i32,
    Option<String>,
    OffsetDateTime,
);

pub(super) async fn detail(
    _: Admin,
    path: web::Path<Uuid>,
    state: web::Data<AdminState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    // The id's time names the partition: one or two are read, not every day's.
    let (low, high) = partitions::arrival_window(id);
    let (event, payload, deliveries, attempts) = with_pg(&state.postgres, move |conn| {
        let event: Full = e::table
            .filter(e::id.eq(id))
            .filter(e::received_at.between(low, high))
            .select((
                Summary::as_select(),
                e::stream_id,
                e::content_type,
                e::headers,
                e::destinations,
                e::replay_of,
                e::only_destination,
            ))
            .first(conn)?;
        let deliveries: Vec<DeliveryRow> = deliveries::table
            .filter(deliveries::event_id.eq(id))
            .filter(deliveries::received_at.between(low, high))
            .select((
                deliveries::destination,
                deliveries::status,
                deliveries::attempts,
                deliveries::last_error,
                deliveries::last_status_code,
                deliveries::updated_at,
                deliveries::delivered_at,
            ))
            .order(deliveries::destination)
            .load(conn)?;
        let attempts: Vec<AttemptRow> = delivery_attempts::table
            .filter(delivery_attempts::event_id.eq(id))
            .filter(delivery_attempts::received_at.between(low, high))
            .select((
                delivery_attempts::destination,
                delivery_attempts::attempt,
                delivery_attempts::status_code,
                delivery_attempts::duration_ms,
                delivery_attempts::error,
                delivery_attempts::attempted_at,
            ))
            .order((delivery_attempts::attempted_at, delivery_attempts::id))
            .load(conn)?;
        let payload: Option<Vec<u8>> = event_payloads::table
            .filter(event_payloads::event_id.eq(id))
            .filter(event_payloads::received_at.between(low, high))
            .select(event_payloads::payload)
            .first(conn)
            .optional()?;
        Ok((event, payload, deliveries, attempts))
    })
    .await?;
    let (summary, stream_id, content_type, headers, destinations, replay_of, only) = event;
    let mut body = summary_json(&summary);
    body["stream_id"] = json!(stream_id);
    body["content_type"] = json!(content_type);
    body["headers"] = headers;
    body["destinations"] = json!(destinations);
    // A replay under a new id: the event it copies, and the one destination it was for.
    body["replay_of"] = json!(replay_of);
    body["only_destination"] = json!(only);
    match payload.map(String::from_utf8) {
        Some(Ok(text)) => {
            body["payload"] = json!(text);
            body["payload_encoding"] = json!("utf-8");
        }
        Some(Err(raw)) => {
            body["payload"] = json!(crate::verify::base64_std(raw.as_bytes()));
            body["payload_encoding"] = json!("base64");
        }
        // Dropped by audit.payload_retention_days; the row and its attempts stay.
        None => {
            body["payload"] = Value::Null;
            body["payload_pruned"] = json!(true);
        }
    }
    body["deliveries"] = json!(deliveries
        .iter()
        .map(|d| json!({
            "destination": d.0, "status": d.1, "attempts": d.2, "last_error": d.3,
            "last_status_code": d.4, "updated_at": rfc3339(d.5), "delivered_at": d.6.map(rfc3339),
        }))
        .collect::<Vec<_>>());
    body["delivery_attempts"] = json!(attempts
        .iter()
        .map(|a| json!({
            "destination": a.0, "attempt": a.1, "status_code": a.2, "duration_ms": a.3,
            "error": a.4, "attempted_at": rfc3339(a.5),
        }))
        .collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(body))
}
