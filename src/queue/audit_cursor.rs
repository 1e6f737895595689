//! Where the audit trail stands in each partition: one replica at a time (holding the
//! partition's audit lease) reads the source stream and the outcomes stream with `XRANGE`
//! from a cursor kept in Redis, and moves the cursor after PostgreSQL committed.
//!
//! Why not a consumer group: `XREADGROUP` and `XACK` are writes, which Redis appends to its
//! AOF and sends to its replicas for every entry; with the audit trail read that way, an AOF
//! Redis wrote about twice as much per webhook as the enqueue alone. A cursor costs one small
//! write per batch.

use super::entry_id::EntryId;
use crate::source::SourceKeys;

/// Takes or keeps a partition's audit lease. KEYS[1] lease, KEYS[2] cursor hash, KEYS[3]
/// source stream, KEYS[4] outcomes stream; ARGV[1] token, ARGV[2] ms. Returns `{0}` when
/// another replica holds it, else `{1, events, outcomes}` when kept and `{2, events,
/// outcomes}` when newly taken, with the cursor (`0-0` where none is kept yet). Newly taken,
/// it drops the
/// consumer group the audit trail used to read through (hookgate before the cursor), whose
/// pending entries would otherwise stay in Redis memory for good.
pub const AUDIT_LEASE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
local state = 1
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif cur then
  return {0}
else
  state = 2
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  for i = 3, 4 do
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.pcall('XGROUP', 'DESTROY', KEYS[i], 'audit') end
  end
end
local at = redis.call('HMGET', KEYS[2], 'events', 'outcomes')
return {state, at[1] or '0-0', at[2] or '0-0'}
"#;

/// Moves the cursor of the lease holder after a commit, removes the outcomes written (they
/// served their purpose) and renews the lease. KEYS[1] lease, KEYS[2] cursor hash, KEYS[3]
/// outcomes stream; ARGV[1] token, ARGV[2] ms, ARGV[3] the first event not written yet or
/// '', ARGV[4] the first outcome not written yet or '', ARGV[5] and ARGV[6] where the holder
/// took or last moved the cursor. A lease that ran out during a long write and that nobody
/// took is taken again if the cursor is still where the holder left it (nobody wrote
/// since): else a write longer than the lease would never move the cursor. Returns 0
/// (nothing moved) when another replica holds the lease or moved the cursor.
pub const AUDIT_COMMIT_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  if cur then return 0 end
  local at = redis.call('HMGET', KEYS[2], 'events', 'outcomes')
  if (at[1] or '0-0') ~= ARGV[5] or (at[2] or '0-0') ~= ARGV[6] then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'events', ARGV[3]) end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'outcomes', ARGV[4])
  redis.call('XTRIM', KEYS[3], 'MINID', ARGV[4])
end
return 1
"#;

/// Gives a partition's audit lease up (at shutdown), if still `token`'s, so that another
/// replica (or this one restarted) takes the partition at once rather than after the lease's
/// life. KEYS[1] lease; ARGV[1] token.
pub const AUDIT_UNLEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Where a partition's audit lease stands after an attempt to take or keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditLease {
    /// Newly taken: reading starts at these entries of the source and outcomes streams.
    Taken { events: EntryId, outcomes: EntryId },
    /// Still this replica's; the cursor as Redis has it.
    Kept { events: EntryId, outcomes: EntryId },
    /// Another replica's.
    Elsewhere,
}

/// Takes or keeps the audit lease of partition `keys` for `ms` milliseconds.
pub async fn audit_lease(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &SourceKeys,
    token: &str,
    ms: u64,
) -> redis::RedisResult<AuditLease> {
    let reply: Vec<redis::Value> = redis::Script::new(AUDIT_LEASE_LUA)
        .key(&keys.audit_lease)
        .key(&keys.audit_cursor)
        .key(&keys.stream)
        .key(&keys.outcomes)
        .arg(token)
        .arg(ms)
        .invoke_async(conn)
        .await?;
    let int =
        |v: Option<&redis::Value>| v.and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok());
    let id = |v: Option<&redis::Value>| {
        v.and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
            .and_then(|s| EntryId::parse(&s))
            .unwrap_or(EntryId(0, 0))
    };
    Ok(match int(reply.first()) {
        Some(2) => AuditLease::Taken {
            events: id(reply.get(1)),
            outcomes: id(reply.get(2)),
        },
        Some(1) => AuditLease::Kept {
            events: id(reply.get(1)),
            outcomes: id(reply.get(2)),
        },
        _ => AuditLease::Elsewhere,
    })
}

/// Moves partition `keys`' cursor from `from` (where `token` took or last moved it) to `to`
/// (the first event and the first outcome not written yet), if `token` still holds the lease
/// or nobody took it since; false otherwise.
pub async fn audit_commit(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &SourceKeys,
    token: &str,
    ms: u64,
    from: (EntryId, EntryId),
    to: (EntryId, EntryId),
) -> redis::RedisResult<bool> {
    let moved = |f: EntryId, t: EntryId| if f == t { String::new() } else { t.to_string() };
    redis::Script::new(AUDIT_COMMIT_LUA)
        .key(&keys.audit_lease)
        .key(&keys.audit_cursor)
        .key(&keys.outcomes)
        .arg(token)
        .arg(ms)
        .arg(moved(from.0, to.0))
        .arg(moved(from.1, to.1))
        .arg(from.0.to_string())
        .arg(from.1.to_string())
        .invoke_async(conn)
        .await
}

/// Gives the audit lease of partition `keys` up if `token` holds it.
pub async fn audit_unlease(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &SourceKeys,
    token: &str,
) -> redis::RedisResult<()> {
    redis::Script::new(AUDIT_UNLEASE_LUA)
        .key(&keys.audit_lease)
        .arg(token)
        .invoke_async(conn)
        .await
}

/// Whether nobody holds the audit lease of partition `keys`.
pub async fn audit_lease_free(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &SourceKeys,
) -> redis::RedisResult<bool> {
    let held: bool = redis::cmd("EXISTS")
        .arg(&keys.audit_lease)
        .query_async(conn)
        .await?;
    Ok(!held)
}

/// The first event of partition `keys` the audit trail has not written; None while no audit
/// consumer has written any (everything is kept for it).
pub async fn audited_floor(
    conn: &mut impl redis::aio::ConnectionLike,
    keys: &SourceKeys,
) -> redis::RedisResult<Option<EntryId>> {
    let at: Option<String> = redis::cmd("HGET")
        .arg(&keys.audit_cursor)
        .arg("events")
        .query_async(conn)
        .await?;
    Ok(at.as_deref().and_then(EntryId::parse))
}

/// The registry of replicas whose audit consumer writes (its last write succeeded, or it had
/// none to make) under key prefix `prefix`, by last report (ms).
fn writers_key(prefix: &str) -> String {
    format!("{prefix}:audit:writers")
}

/// Reports ARGV[1]'s consumer as able to write (unless ARGV[1] is empty), forgets reports
/// older than a day, and counts those of the last ARGV[2] ms, all on Redis's clock: report
/// times from each replica's clock miscounted the writers when the clocks drifted apart.
const AUDIT_WRITERS_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
end
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[2]), '+inf')
"#;

/// Reports `report`'s consumer as able to write, if given, and counts the consumers that
/// reported within the last `window_ms` (at least one: the caller's).
pub async fn audit_writers(
    conn: &mut impl redis::aio::ConnectionLike,
    prefix: &str,
    report: Option<&str>,
    window_ms: u64,
) -> redis::RedisResult<usize> {
    let n: usize = redis::Script::new(AUDIT_WRITERS_LUA)
        .key(writers_key(prefix))
        .arg(report.unwrap_or(""))
        .arg(window_ms)
        .invoke_async(conn)
        .await?;
    Ok(n.max(1))
}

/// Takes `token`'s consumer out of the writers (it stops): the others count it no more.
pub async fn audit_writer_leave(
    conn: &mut impl redis::aio::ConnectionLike,
    prefix: &str,
    token: &str,
) -> redis::RedisResult<()> {
    redis::cmd("ZREM")
        .arg(writers_key(prefix))
        .arg(token)
        .query_async(conn)
        .await
}

/// Where the cursor may go after a write: the first entry read and not written (held back),
/// else the first one not read yet.
pub fn first_unwritten(unread: EntryId, held: impl IntoIterator<Item = EntryId>) -> EntryId {
    held.into_iter().fold(unread, EntryId::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_stops_at_the_first_event_held_back() {
        let unread = EntryId(10, 3);
        assert_eq!(first_unwritten(unread, []), unread);
        assert_eq!(
            first_unwritten(unread, [EntryId(9, 1), EntryId(7, 0), EntryId(9, 0)]),
            EntryId(7, 0)
        );
    }

    fn keys() -> SourceKeys {
        SourceKeys::new(&format!("hgtest-{}", uuid::Uuid::new_v4().simple()), "s")
    }

    async fn add(conn: &mut redis::aio::MultiplexedConnection, stream: &str) -> EntryId {
        let id: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("f")
            .arg("v")
            .query_async(conn)
            .await
            .expect("XADD");
        EntryId::parse(&id).expect("an entry id")
    }

    async fn drop_keys(conn: &mut redis::aio::MultiplexedConnection, k: &SourceKeys) {
        let _: () = redis::cmd("DEL")
            .arg(&k.audit_lease)
            .arg(&k.audit_cursor)
            .arg(&k.stream)
            .arg(&k.outcomes)
            .query_async(conn)
            .await
            .expect("DEL");
    }

    #[actix_web::test]
    async fn one_holder_moves_the_cursor_and_the_next_starts_there() {
        let mut conn = crate::queue::test_connection().await;
        let k = keys();
        assert_eq!(audited_floor(&mut conn, &k).await.expect("HGET"), None);
        let first = audit_lease(&mut conn, &k, "a", 5_000).await.expect("lease");
        assert_eq!(
            first,
            AuditLease::Taken {
                events: EntryId(0, 0),
                outcomes: EntryId(0, 0)
            }
        );
        assert_eq!(
            audit_lease(&mut conn, &k, "b", 5_000).await.expect("lease"),
            AuditLease::Elsewhere
        );
        assert_eq!(
            audit_lease(&mut conn, &k, "a", 5_000).await.expect("lease"),
            AuditLease::Kept {
                events: EntryId(0, 0),
                outcomes: EntryId(0, 0)
            }
        );
        let o1 = add(&mut conn, &k.outcomes).await;
        let o2 = add(&mut conn, &k.outcomes).await;
        let e = EntryId(42, 1);
        let start = (EntryId(0, 0), EntryId(0, 0));
        // Another replica's commit moves nothing.
        assert!(!audit_commit(&mut conn, &k, "b", 5_000, start, (e, o2))
            .await
            .expect("commit"));
        assert_eq!(audited_floor(&mut conn, &k).await.expect("HGET"), None);
        assert!(audit_commit(&mut conn, &k, "a", 5_000, start, (e, o2))
            .await
            .expect("commit"));
        assert_eq!(audited_floor(&mut conn, &k).await.expect("HGET"), Some(e));
        let left: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(&k.outcomes)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("XRANGE");
        assert_eq!(left.len(), 1, "the outcome before {o2} ({o1}) is gone");
        // The holder is gone: the next one starts where the cursor is.
        audit_unlease(&mut conn, &k, "b").await.expect("unlease");
        assert_eq!(
            audit_lease(&mut conn, &k, "b", 5_000).await.expect("lease"),
            AuditLease::Elsewhere,
            "only the holder gives the lease up"
        );
        audit_unlease(&mut conn, &k, "a").await.expect("unlease");
        assert_eq!(
            audit_lease(&mut conn, &k, "b", 5_000).await.expect("lease"),
            AuditLease::Taken {
                events: e,
                outcomes: o2
            }
        );
        drop_keys(&mut conn, &k).await;
    }

    #[actix_web::test]
    async fn a_lease_that_ran_out_during_a_write_is_taken_back_only_if_nobody_moved_the_cursor() {
        let mut conn = crate::queue::test_connection().await;
        let k = keys();
        let start = (EntryId(0, 0), EntryId(0, 0));
        audit_lease(&mut conn, &k, "a", 5_000).await.expect("lease");
        // The write took longer than the lease, and nobody took it.
        audit_unlease(&mut conn, &k, "a").await.expect("unlease");
        let first = (EntryId(5, 0), EntryId(0, 0));
        assert!(audit_commit(&mut conn, &k, "a", 5_000, start, first)
            .await
            .expect("commit"));
        let holder: Option<String> = redis::cmd("GET")
            .arg(&k.audit_lease)
            .query_async(&mut conn)
            .await
            .expect("GET");
        assert_eq!(holder.as_deref(), Some("a"), "taken back");
        // Another replica took it after it ran out, and moved the cursor: nothing moves.
        audit_unlease(&mut conn, &k, "a").await.expect("unlease");
        audit_lease(&mut conn, &k, "b", 5_000).await.expect("lease");
        let by_b = (EntryId(9, 0), EntryId(0, 0));
        assert!(audit_commit(&mut conn, &k, "b", 5_000, first, by_b)
            .await
            .expect("commit"));
        audit_unlease(&mut conn, &k, "b").await.expect("unlease");
        let late = (EntryId(7, 0), EntryId(0, 0));
        assert!(!audit_commit(&mut conn, &k, "a", 5_000, first, late)
            .await
            .expect("commit"));
        assert_eq!(
            audited_floor(&mut conn, &k).await.expect("HGET"),
            Some(EntryId(9, 0))
        );
        drop_keys(&mut conn, &k).await;
    }

    #[actix_web::test]
    async fn taking_the_lease_drops_the_consumer_group_of_older_releases() {
        let mut conn = crate::queue::test_connection().await;
        let k = keys();
        add(&mut conn, &k.stream).await;
        crate::queue::ensure_group(&mut conn, &k.stream, "audit")
            .await
            .expect("group");
        crate::queue::ensure_group(&mut conn, &k.stream, "dest:d")
            .await
            .expect("group");
        audit_lease(&mut conn, &k, "a", 5_000).await.expect("lease");
        let groups = crate::queue::stream_groups(&mut conn, &k.stream)
            .await
            .expect("XINFO")
            .expect("the stream");
        let names: Vec<&str> = groups.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["dest:d"]);
        drop_keys(&mut conn, &k).await;
    }

    #[actix_web::test]
    async fn writers_report_and_are_counted_within_the_window() {
        let mut conn = crate::queue::test_connection().await;
        let prefix = format!("hgtest-{}", uuid::Uuid::new_v4().simple());
        let count = |report, window| {
            let prefix = prefix.clone();
            async move {
                let mut conn = crate::queue::test_connection().await;
                audit_writers(&mut conn, &prefix, report, window)
                    .await
                    .expect("writers")
            }
        };
        assert_eq!(count(None, 60_000).await, 1, "at least the caller");
        assert_eq!(count(Some("a"), 60_000).await, 1);
        assert_eq!(count(Some("b"), 60_000).await, 2);
        assert_eq!(
            count(None, 60_000).await,
            2,
            "counting alone reports nobody"
        );
        audit_writer_leave(&mut conn, &prefix, "a")
            .await
            .expect("leave");
        assert_eq!(count(None, 60_000).await, 1);
        let _: () = redis::cmd("DEL")
            .arg(writers_key(&prefix))
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}
