//! The event and attempt records that ingest, dispatch, delivery and the audit trail all pass
//! around. A leaf module: it imports no other module of the crate but `status`, so each of
//! them can use it without importing the others.

use bytes::Bytes;
use redis::streams::StreamId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::status::Status;

/// The time of `ms` unix milliseconds (the unit of stream entries); None out of range.
pub fn time_of_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// The unix milliseconds of a time (the unit of stream entries).
pub fn ms_of_time(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The stream entry field naming the event a replay under a new id copies.
pub const REPLAY_OF_FIELD: &str = "replay_of";
/// The stream entry field naming the one destination a source stream entry is for.
pub const ONLY_FIELD: &str = "only";

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
    /// The only destination it is for (a replay to one destination under a new id).
    pub only: Option<String>,
    /// The event it replays under a new id.
    pub replay_of: Option<String>,
    /// Its ordering key, once an ordered destination admitted it.
    pub okey: Option<String>,
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
            only: entry.get::<String>(ONLY_FIELD).filter(|d| !d.is_empty()),
            replay_of: entry
                .get::<String>(REPLAY_OF_FIELD)
                .filter(|d| !d.is_empty()),
            okey: entry.get::<String>("okey"),
        })
    }

    /// The entry's fields for a retry stream or a dead letter, with the attempt to come.
    pub fn fields(&self, attempt: u32) -> Vec<(&'static str, Vec<u8>)> {
        let mut fields = vec![
            ("id", self.id.as_bytes().to_vec()),
            ("key", self.key.as_bytes().to_vec()),
            ("type", self.event_type.as_bytes().to_vec()),
            ("ts", self.received_at_ms.to_string().into_bytes()),
            ("ct", self.content_type.as_bytes().to_vec()),
            ("hdr", self.headers.as_bytes().to_vec()),
            ("body", self.body.to_vec()),
            ("attempt", attempt.to_string().into_bytes()),
        ];
        // A retry keeps the key its head holds.
        if let Some(key) = &self.okey {
            fields.push(("okey", key.as_bytes().to_vec()));
        }
        fields
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
    /// When the event was received: the audit trail keeps an event's rows in the time
    /// partition of its arrival.
    pub received_at: OffsetDateTime,
}

impl AttemptRecord {
    /// When the delivery succeeded: the attempt's time if this attempt delivered it.
    pub fn delivered_at(&self) -> Option<OffsetDateTime> {
        (self.delivery_status == Status::Delivered).then_some(self.attempted_at)
    }

    /// The record as the field/value pairs of an outcomes stream entry. The time is kept to
    /// the millisecond, so a record read back is equal to the one written (it is part of the
    /// attempt's unique key in the audit trail).
    pub fn fields(&self) -> Vec<(&'static str, Vec<u8>)> {
        let at_ms = ms_of_time(self.attempted_at);
        vec![
            ("e", self.event_id.to_string().into_bytes()),
            ("d", self.destination.as_bytes().to_vec()),
            ("n", self.attempt.to_string().into_bytes()),
            ("s", self.delivery_status.as_str().as_bytes().to_vec()),
            (
                "c",
                self.status_code
                    .map(|c| c.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
            ),
            ("ms", self.duration_ms.to_string().into_bytes()),
            (
                "err",
                self.error
                    .as_deref()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
            ),
            ("at", at_ms.to_string().into_bytes()),
            ("r", ms_of_time(self.received_at).to_string().into_bytes()),
        ]
    }

    /// Parses an entry of an outcomes stream (see [`AttemptRecord::fields`]).
    pub fn parse(entry: &StreamId) -> Result<Self, String> {
        let text = |name: &str| entry.get::<String>(name).unwrap_or_default();
        let bad = |what: &str| format!("outcome {} has no valid {what}", entry.id);
        let event_id = Uuid::parse_str(&text("e")).map_err(|_| bad("event id"))?;
        let attempt: i32 = text("n").parse().map_err(|_| bad("attempt"))?;
        let delivery_status: Status = text("s").parse().map_err(|_| bad("status"))?;
        let at_ms: i64 = text("at").parse().map_err(|_| bad("time"))?;
        let attempted_at = time_of_ms(at_ms).ok_or_else(|| bad("time"))?;
        let received_ms: i64 = text("r").parse().map_err(|_| bad("arrival time"))?;
        let received_at = time_of_ms(received_ms).ok_or_else(|| bad("arrival time"))?;
        let error = text("err");
        Ok(AttemptRecord {
            event_id,
            destination: text("d"),
            attempt,
            status_code: text("c").parse().ok(),
            duration_ms: text("ms").parse().unwrap_or(0),
            error: (!error.is_empty()).then_some(error),
            attempted_at,
            delivery_status,
            received_at,
        })
    }

    /// The time to record an attempt at: now, to the millisecond (see [`AttemptRecord::fields`]).
    pub fn now() -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: Vec<(&'static str, Vec<u8>)>) -> StreamId {
        StreamId {
            id: "1-0".into(),
            map: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), redis::Value::BulkString(v)))
                .collect(),
            milliseconds_elapsed_from_delivery: None,
            delivered_count: None,
        }
    }

    #[test]
    fn an_outcome_read_back_equals_the_attempt_written() {
        let record = AttemptRecord {
            event_id: Uuid::now_v7(),
            destination: "app".into(),
            attempt: 3,
            status_code: Some(503),
            duration_ms: 17,
            error: Some("503 on attempt 3".into()),
            attempted_at: AttemptRecord::now(),
            delivery_status: Status::Retrying,
            received_at: AttemptRecord::now(),
        };
        let back = AttemptRecord::parse(&entry(record.fields())).expect("parses");
        assert_eq!(back.event_id, record.event_id);
        assert_eq!(back.destination, "app");
        assert_eq!(back.attempt, 3);
        assert_eq!(back.status_code, Some(503));
        assert_eq!(back.duration_ms, 17);
        assert_eq!(back.error, record.error);
        assert_eq!(back.attempted_at, record.attempted_at);
        assert_eq!(back.delivery_status, Status::Retrying);
        assert_eq!(back.received_at, record.received_at);

        let answerless = AttemptRecord {
            status_code: None,
            error: None,
            delivery_status: Status::Delivered,
            ..record
        };
        let back = AttemptRecord::parse(&entry(answerless.fields())).expect("parses");
        assert_eq!((back.status_code, back.error), (None, None));
    }

    #[test]
    fn an_outcome_without_an_event_id_is_refused() {
        let mut fields = AttemptRecord {
            event_id: Uuid::now_v7(),
            destination: "app".into(),
            attempt: 1,
            status_code: Some(200),
            duration_ms: 1,
            error: None,
            attempted_at: AttemptRecord::now(),
            delivery_status: Status::Delivered,
            received_at: AttemptRecord::now(),
        }
        .fields();
        fields.retain(|(k, _)| *k != "e");
        assert!(AttemptRecord::parse(&entry(fields)).is_err());
    }
}
