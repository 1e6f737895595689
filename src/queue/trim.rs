//! Trimming a source stream below what every destination still needs.

use super::audit_cursor::audited_floor;
use super::entry_id::EntryId;
use super::groups::stream_groups;
use crate::source::SourceKeys;

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

/// Where one partition's stream may be trimmed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floors {
    /// Below what every destination is done with.
    pub delivered: EntryId,
    /// Below what the audit trail has also written (None: it has written nothing yet).
    pub audited: Option<EntryId>,
}

/// What to trim: below both floors; past `max_backlog` entries, below what the destinations
/// are done with even when the audit trail has not written it (PostgreSQL away so long that
/// Redis memory would run out, which would stop ingest: worse than a missing audit row).
/// Returns the floor to trim to first, and the one to trim to next, past the audit trail.
pub fn trim_plan(
    floors: Floors,
    length: u64,
    max_backlog: u64,
) -> (Option<EntryId>, Option<EntryId>) {
    let safe = floors.audited.map(|a| a.min(floors.delivered));
    let beyond =
        (length > max_backlog && safe != Some(floors.delivered)).then_some(floors.delivered);
    (safe, beyond)
}

/// Trims the source stream of partition `keys` (of source `source`, for log lines) below what
/// every one of `groups` and the audit trail are done with, and past `max_backlog` entries
/// below what the groups are done with (see [`trim_plan`]); returns how many entries went.
pub async fn trim_settled(
    conn: &mut impl redis::aio::ConnectionLike,
    source: &str,
    keys: &SourceKeys,
    groups: &[String],
    max_backlog: u64,
) -> redis::RedisResult<u64> {
    let stream = &keys.stream;
    let Some(delivered) = trim_floor(conn, stream, groups).await? else {
        return Ok(0);
    };
    let audited = audited_floor(conn, keys).await?;
    let length: u64 = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
    let (safe, beyond) = trim_plan(Floors { delivered, audited }, length, max_backlog);
    let mut trimmed = 0;
    if let Some(floor) = safe {
        trimmed += trim_below(conn, stream, floor).await?;
    }
    if let Some(floor) = beyond {
        let lost = trim_below(conn, stream, floor).await?;
        if lost > 0 {
            log::error!(
                "source {source}: {length} entries in {stream}, more than audit.max_backlog \
                 ({max_backlog}), and the audit trail has not written them (is PostgreSQL \
                 down?): trimmed {lost} delivered entries anyway; their audit rows are missing"
            );
            metrics::counter!("hookgate_audit_dropped_total").increment(lost);
        }
        trimmed += lost;
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floors(delivered: u64, audited: Option<u64>) -> Floors {
        Floors {
            delivered: EntryId(delivered, 0),
            audited: audited.map(|a| EntryId(a, 0)),
        }
    }

    #[test]
    fn below_what_both_the_destinations_and_the_audit_trail_are_done_with() {
        assert_eq!(
            trim_plan(floors(10, Some(5)), 100, 1_000),
            (Some(EntryId(5, 0)), None)
        );
        assert_eq!(
            trim_plan(floors(10, Some(20)), 100, 1_000),
            (Some(EntryId(10, 0)), None)
        );
    }

    #[test]
    fn nothing_before_the_audit_trail_wrote_anything_until_the_backlog_is_past_its_bound() {
        assert_eq!(trim_plan(floors(10, None), 100, 1_000), (None, None));
        assert_eq!(
            trim_plan(floors(10, None), 1_001, 1_000),
            (None, Some(EntryId(10, 0)))
        );
    }

    #[test]
    fn past_the_bound_what_is_delivered_goes_even_when_not_audited() {
        assert_eq!(
            trim_plan(floors(10, Some(5)), 1_001, 1_000),
            (Some(EntryId(5, 0)), Some(EntryId(10, 0)))
        );
        // Nothing is past the audit trail: no second trim.
        assert_eq!(
            trim_plan(floors(10, Some(10)), 1_001, 1_000),
            (Some(EntryId(10, 0)), None)
        );
    }
}
