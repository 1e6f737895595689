//! The audit row of an accepted event.

use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

use super::schema::webhook_events;
use crate::event::{time_of_ms, NewEvent};
use crate::status::Status;

/// An accepted event's audit row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_events, treat_none_as_default_value = false)]
pub struct NewEventRow {
    pub(super) id: Uuid,
    source: String,
    event_type: Option<String>,
    idempotency_key: String,
    stream_id: String,
    pub(super) received_at: OffsetDateTime,
    content_type: Option<String>,
    headers: serde_json::Value,
    /// Written to `event_payloads`, a table of its own (payloads may be kept shorter).
    #[diesel(skip_insertion)]
    pub(super) payload: Vec<u8>,
    pub(super) destinations: i32,
    /// A [`Status`] name (the column is text).
    pub(super) status: &'static str,
    pub(super) attempts: i32,
    pub(super) last_error: Option<String>,
    pub(super) delivered_at: Option<OffsetDateTime>,
    /// The event this one replays under a new id.
    replay_of: Option<Uuid>,
    /// The one destination a replay under a new id is for.
    only_destination: Option<String>,
}

impl NewEventRow {
    /// The row of `event`, appended to its source's stream as `stream_id`, to be delivered
    /// to `destinations` destinations.
    pub fn new(source: &str, destinations: usize, event: NewEvent, stream_id: String) -> Self {
        let received_at = time_of_ms(event.received_at_ms).unwrap_or_else(OffsetDateTime::now_utc);
        NewEventRow {
            id: event.id,
            source: source.to_string(),
            event_type: event.event_type.map(pg_text),
            idempotency_key: pg_text(event.key),
            stream_id,
            received_at,
            content_type: event.content_type.map(pg_text),
            headers: event.headers,
            payload: event.body.to_vec(),
            destinations: destinations as i32,
            status: Status::Queued.as_str(),
            attempts: 0,
            last_error: None,
            delivered_at: None,
            replay_of: None,
            only_destination: None,
        }
    }

    /// The row of a replay under a new id: which event it copies, and for which destination
    /// when it is for one only.
    pub fn replaying(mut self, replay_of: Option<Uuid>, only: Option<String>) -> Self {
        self.replay_of = replay_of;
        self.only_destination = only.map(pg_text);
        self
    }
}

/// Text PostgreSQL accepts: it refuses NUL characters, which a sender's JSON can carry
/// (`"\u0000"` in the field the key or type comes from). One such row would fail its whole
/// batch on every try; the character is replaced instead.
pub(super) fn pg_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{fffd}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_character_is_replaced_the_rest_kept() {
        assert_eq!(pg_text("a\0b".into()), "a\u{fffd}b");
        assert_eq!(pg_text("plain".into()), "plain");
    }
}
