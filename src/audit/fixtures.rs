//! Event rows and attempt records for the audit tests.

use time::OffsetDateTime;
use uuid::Uuid;

use super::row::NewEventRow;
use crate::event::{AttemptRecord, NewEvent};
use crate::status::Status;

/// The row of a new event of source `orders`, with a fresh id.
pub(super) fn new_event_row(destinations: usize) -> NewEventRow {
    let event = NewEvent {
        id: Uuid::now_v7(),
        key: "k".into(),
        event_type: None,
        received_at_ms: 1_795_000_000_000,
        content_type: None,
        headers: serde_json::json!({}),
        body: bytes::Bytes::from_static(b"{}"),
    };
    NewEventRow::new("orders", destinations, event, "1-0".into())
}

/// Attempt `n` to destination `app`: a 200 when delivered, else a 503 with an error.
pub(super) fn attempt(event: Uuid, n: i32, status: Status, at: OffsetDateTime) -> AttemptRecord {
    let delivered = status == Status::Delivered;
    AttemptRecord {
        event_id: event,
        destination: "app".into(),
        attempt: n,
        status_code: Some(if delivered { 200 } else { 503 }),
        duration_ms: 1,
        error: (!delivered).then(|| format!("503 on attempt {n}")),
        attempted_at: at,
        delivery_status: status,
        received_at: OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("a time"),
    }
}
