//! One spooled webhook and its framing on disk: `[len u32][crc32 u32][payload]`, so that a
//! record cut short by a crash, or damaged, is recognised when the spool is read back.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::event::NewEvent;

/// Bytes of a record's frame before its payload: length and checksum.
pub const FRAME_HEADER: usize = 8;
/// Largest payload a frame may announce; a larger length is damage, not a record.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// A verified webhook that Redis could not take in time, as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// The source's name.
    pub source: String,
    /// The event id the sender was given; kept when the event reaches Redis.
    pub id: Uuid,
    /// The idempotency key.
    pub key: String,
    pub event_type: Option<String>,
    /// When the sender posted it (unix ms).
    pub received_at_ms: i64,
    pub content_type: Option<String>,
    /// The stored request headers as JSON text.
    pub headers: String,
    pub body: Bytes,
}

/// Why bytes read back are not a record.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the frame announces: the end of a write cut short.
    #[error("record cut short")]
    Torn,
    /// The checksum or the fields do not match: damage.
    #[error("record damaged")]
    Damaged,
}

/// A record too large for a frame.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a spool record of {0} bytes is past the limit of {MAX_PAYLOAD}")]
pub struct TooLarge(pub usize);

impl SpoolRecord {
    /// The record of a verified webhook of `source`.
    pub fn new(source: &str, event: &NewEvent) -> SpoolRecord {
        SpoolRecord {
            source: source.to_string(),
            id: event.id,
            key: event.key.clone(),
            event_type: event.event_type.clone(),
            received_at_ms: event.received_at_ms,
            content_type: event.content_type.clone(),
            headers: event.headers.to_string(),
            body: event.body.clone(),
        }
    }

    /// The webhook again, as ingest handed it over.
    pub fn to_event(&self) -> NewEvent {
        NewEvent {
            id: self.id,
            key: self.key.clone(),
            event_type: self.event_type.clone(),
            received_at_ms: self.received_at_ms,
            content_type: self.content_type.clone(),
            headers: serde_json::from_str(&self.headers).unwrap_or(serde_json::Value::Null),
            body: self.body.clone(),
        }
    }

    /// The record framed for the spool file; refused when its payload is past `MAX_PAYLOAD`,
    /// which `decode` would call damage.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), TooLarge> {
        let mut payload = BytesMut::with_capacity(64 + self.body.len() + self.headers.len());
        payload.put_slice(self.id.as_bytes());
        payload.put_i64_le(self.received_at_ms);
        for field in [
            self.source.as_bytes(),
            self.key.as_bytes(),
            self.event_type.as_deref().unwrap_or("").as_bytes(),
            self.content_type.as_deref().unwrap_or("").as_bytes(),
            self.headers.as_bytes(),
            self.body.as_ref(),
        ] {
            payload.put_u32_le(field.len() as u32);
            payload.put_slice(field);
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(TooLarge(payload.len()));
        }
        out.put_u32_le(payload.len() as u32);
        out.put_u32_le(crc32fast::hash(&payload));
        out.put_slice(&payload);
        Ok(())
    }

    /// Reads the record at the start of `buf`; returns it and the bytes its frame took.
    pub fn decode(buf: &[u8]) -> Result<(SpoolRecord, usize), FrameError> {
        if buf.len() < FRAME_HEADER {
            return Err(FrameError::Torn);
        }
        let mut head = &buf[..FRAME_HEADER];
        let len = head.get_u32_le() as usize;
        let crc = head.get_u32_le();
        if len > MAX_PAYLOAD {
            return Err(FrameError::Damaged);
        }
        let Some(payload) = buf.get(FRAME_HEADER..FRAME_HEADER + len) else {
            return Err(FrameError::Torn);
        };
        if crc32fast::hash(payload) != crc {
            return Err(FrameError::Damaged);
        }
        let record = parse(payload).ok_or(FrameError::Damaged)?;
        Ok((record, FRAME_HEADER + len))
    }
}

fn parse(mut p: &[u8]) -> Option<SpoolRecord> {
    if p.len() < 24 {
        return None;
    }
    let id = Uuid::from_slice(&p[..16]).ok()?;
    p.advance(16);
    let received_at_ms = p.get_i64_le();
    let mut field = || -> Option<Vec<u8>> {
        if p.len() < 4 {
            return None;
        }
        let len = p.get_u32_le() as usize;
        let value = p.get(..len)?.to_vec();
        p.advance(len);
        Some(value)
    };
    let text = |v: Vec<u8>| String::from_utf8(v).ok();
    let optional = |s: String| (!s.is_empty()).then_some(s);
    let source = text(field()?)?;
    let key = text(field()?)?;
    let event_type = optional(text(field()?)?);
    let content_type = optional(text(field()?)?);
    let headers = text(field()?)?;
    let body = Bytes::from(field()?);
    Some(SpoolRecord {
        source,
        id,
        key,
        event_type,
        received_at_ms,
        content_type,
        headers,
        body,
    })
}

#[cfg(test)]
pub(crate) fn sample(n: u64) -> SpoolRecord {
    SpoolRecord {
        source: "pluggy".into(),
        id: Uuid::now_v7(),
        key: format!("key-{n}"),
        event_type: Some("item/updated".into()),
        received_at_ms: 1_764_000_000_000 + n as i64,
        content_type: None,
        headers: r#"{"x-a":"1"}"#.into(),
        body: Bytes::from(format!(r#"{{"n":{n}}}"#)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let record = sample(7);
        let mut buf = BytesMut::new();
        record.encode(&mut buf).expect("fits");
        let (back, used) = SpoolRecord::decode(&buf).expect("decodes");
        assert_eq!((back, used), (record, buf.len()));
    }

    #[test]
    fn a_record_cut_anywhere_is_torn_and_a_flipped_bit_is_damage() {
        let mut buf = BytesMut::new();
        sample(1).encode(&mut buf).expect("fits");
        for cut in 0..buf.len() {
            assert_eq!(
                SpoolRecord::decode(&buf[..cut]).map(|_| ()),
                Err(FrameError::Torn),
                "cut at {cut}"
            );
        }
        for i in FRAME_HEADER..buf.len() {
            let mut bad = buf.to_vec();
            bad[i] ^= 0x10;
            assert_eq!(
                SpoolRecord::decode(&bad).map(|_| ()),
                Err(FrameError::Damaged),
                "bit flipped at {i}"
            );
        }
    }

    #[test]
    fn a_payload_past_the_limit_is_refused_not_written() {
        let mut record = sample(1);
        record.body = Bytes::from(vec![b'x'; MAX_PAYLOAD]);
        let mut buf = BytesMut::new();
        assert!(matches!(record.encode(&mut buf), Err(TooLarge(n)) if n > MAX_PAYLOAD));
        assert!(buf.is_empty(), "nothing framed");
    }
}
