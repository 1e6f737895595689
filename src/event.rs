//! The event and attempt records that ingest, dispatch, delivery and the audit trail all pass
//! around. A leaf module: it imports no other module of the crate but `status`, so each of
//! them can use it without importing the others.

use bytes::Bytes;
use redis::streams::StreamId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::status::Status;

/// A verified webhook, ready to be queued.
pub struct NewEvent {
    /// The id the sender is given (UUIDv7: ordered by arrival).
    pub id: Uuid,
    /// The idempotency key it is de-duplicated by.
    pub key: String,
    /// The sender's event type, when the body names one.
    pub event_type: Option<String>,
    /// When it was received, unix ms.
    pub received_at_ms: i64,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// The stored request headers (secrets removed), as a JSON object.
    pub headers: serde_json::Value,
    /// The raw body, as verified.
    pub body: Bytes,
}

/// One event awaiting delivery to one destination.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    /// The event id the sender was given (and `webhook-id` on delivery).
    pub id: String,
    /// The idempotency key.
    pub key: String,
    /// The event type, empty when unknown.
    pub event_type: String,
    /// When it was received, unix ms.
    pub received_at_ms: i64,
    /// The `Content-Type` to deliver it with, empty when unknown.
    pub content_type: String,
    /// The stored request headers, a JSON object.
    pub headers: String,
    /// The raw body.
    pub body: Bytes,
    /// The attempt this read is for (1 for an entry of the source stream).
    pub attempt: u32,
}

impl QueuedEvent {
    /// Parses an entry of a source stream or a retry stream.
    pub fn parse(entry: &StreamId) -> Result<Self, String> {
        let text = |name: &str| entry.get::<String>(name).unwrap_or_default();
        let id = text("id");
        if id.is_empty() {
            return Err(format!("entry {} has no event id", entry.id));
        }
        let body: Vec<u8> = entry
            .get("body")
            .ok_or_else(|| format!("entry {} has no body", entry.id))?;
        Ok(QueuedEvent {
            id,
            key: text("key"),
            event_type: text("type"),
            received_at_ms: entry.get("ts").unwrap_or_default(),
            content_type: text("ct"),
            headers: text("hdr"),
            body: Bytes::from(body),
            attempt: entry.get::<u32>("attempt").unwrap_or(1).max(1),
        })
    }

    /// The entry's fields for a retry stream or a dead letter, with the attempt to come.
    pub fn fields(&self, attempt: u32) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("id", self.id.as_bytes().to_vec()),
            ("key", self.key.as_bytes().to_vec()),
            ("type", self.event_type.as_bytes().to_vec()),
            ("ts", self.received_at_ms.to_string().into_bytes()),
            ("ct", self.content_type.as_bytes().to_vec()),
            ("hdr", self.headers.as_bytes().to_vec()),
            ("body", self.body.to_vec()),
            ("attempt", attempt.to_string().into_bytes()),
        ]
    }

    /// The event as it was accepted, for an audit row written from the stream; None when
    /// the id is not a UUID.
    pub fn into_new_event(self) -> Option<NewEvent> {
        let id = Uuid::parse_str(&self.id).ok()?;
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let headers = serde_json::from_str(&self.headers).unwrap_or(serde_json::json!({}));
        Some(NewEvent {
            id,
            key: self.key,
            event_type: non_empty(self.event_type),
            received_at_ms: self.received_at_ms,
            content_type: non_empty(self.content_type),
            headers,
            body: self.body,
        })
    }
}

/// One delivery attempt and the delivery's status after it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// The event delivered.
    pub event_id: Uuid,
    /// The destination's name.
    pub destination: String,
    /// 1-based.
    pub attempt: i32,
    /// The destination's HTTP status, None when it did not answer.
    pub status_code: Option<i32>,
    /// How long the attempt took.
    pub duration_ms: i32,
    /// Why it failed, or why the delivery ended dead.
    pub error: Option<String>,
    /// When it was made.
    pub attempted_at: OffsetDateTime,
    /// `Delivered`, `Retrying` or `Dead`.
    pub delivery_status: Status,
}

impl AttemptRecord {
    /// When the delivery succeeded: the attempt's time if this attempt delivered it.
    pub fn delivered_at(&self) -> Option<OffsetDateTime> {
        (self.delivery_status == Status::Delivered).then_some(self.attempted_at)
    }
}
