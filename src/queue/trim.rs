//! Trimming a source stream below what every destination still needs.

use super::groups::stream_groups;

/// A stream entry id, `ms-seq`, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId(pub u64, pub u64);

impl EntryId {
    /// Parses `ms-seq`.
    pub fn parse(id: &str) -> Option<EntryId> {
        let (ms, seq) = id.split_once('-')?;
        Some(EntryId(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The smallest id after this one.
    pub fn next(self) -> EntryId {
        EntryId(self.0, self.1.saturating_add(1))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// The oldest entry any of `groups` still needs: the first it has pending, or the first it
/// has not read yet. Everything below can be trimmed. None when nothing may go: no stream
/// yet, or a missing group (about to be re-created from the start) keeps everything.
pub async fn trim_floor(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
    groups: &[String],
) -> redis::RedisResult<Option<EntryId>> {
    // No stream yet: nothing to trim.
    let Some(info) = stream_groups(conn, stream).await? else {
        return Ok(None);
    };
    let mut floor: Option<EntryId> = None;
    for name in groups {
        let Some(group) = info.groups.iter().find(|g| &g.name == name) else {
            return Ok(None);
        };
        let needed = if group.pending > 0 {
            let summary: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
                .arg(stream)
                .arg(name)
                .query_async(conn)
                .await?;
            match summary {
                redis::streams::StreamPendingReply::Data(d) => EntryId::parse(&d.start_id),
                _ => EntryId::parse(&group.last_delivered_id).map(EntryId::next),
            }
        } else {
            EntryId::parse(&group.last_delivered_id).map(EntryId::next)
        };
        let Some(needed) = needed else {
            return Ok(None);
        };
        floor = Some(floor.map_or(needed, |f| f.min(needed)));
    }
    Ok(floor)
}

/// Removes the entries below `floor`; returns how many went.
pub async fn trim_below(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
    floor: EntryId,
) -> redis::RedisResult<u64> {
    redis::cmd("XTRIM")
        .arg(stream)
        .arg("MINID")
        .arg(floor.to_string())
        .query_async(conn)
        .await
}
