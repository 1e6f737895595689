//! A queued event as read back from a stream entry.

use bytes::Bytes;
use redis::streams::StreamId;

/// One event awaiting delivery to one destination.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    /// The event id the sender was given (and `webhook-id` on delivery).
    pub id: String,
    pub key: String,
    pub event_type: String,
    pub received_at_ms: i64,
    pub content_type: String,
    /// The stored request headers, a JSON object.
    pub headers: String,
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
}
