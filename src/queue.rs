//! Redis Streams: the connection pool and the atomic de-duplicate-and-enqueue script.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisSettings;

/// A bb8 manager of self-healing Redis connections. Each pooled connection is redis's
/// `aio::ConnectionManager`, which reconnects by itself after the server restarts; a pooled
/// plain `MultiplexedConnection` would stay dead, because bb8-redis never reports one broken.
#[derive(Clone)]
pub struct RedisManager {
    client: redis::Client,
    config: ConnectionManagerConfig,
}

impl RedisManager {
    /// A manager for `url`; commands time out after `response_timeout`.
    pub fn new(url: &str, response_timeout: Duration) -> redis::RedisResult<Self> {
        Ok(RedisManager {
            client: redis::Client::open(url)?,
            config: ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(response_timeout))
                // bb8 retries the connect itself, up to its own timeout.
                .set_number_of_retries(1),
        })
    }
}

impl bb8::ManageConnection for RedisManager {
    type Connection = HealingConnection;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        ConnectionManager::new_with_config(self.client.clone(), self.config.clone())
            .await
            .map(HealingConnection)
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING")
            .query_async::<String>(conn)
            .await
            .map(|_| ())
    }

    fn has_broken(&self, _conn: &mut Self::Connection) -> bool {
        // It heals itself: a failed command triggers a reconnect for the next one.
        false
    }
}

/// A pooled connection that runs a command once more when the first try finds the connection
/// broken (Redis restarted since it was last used). The failure makes the inner manager
/// reconnect, and the second try waits for that new connection, so no caller sees the stale
/// one. Timeouts are not retried: that would double the sender's wait.
pub struct HealingConnection(ConnectionManager);

/// Whether a command failed because its connection was dead, not because of the command.
fn is_broken_connection(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() && !e.is_timeout()
}

impl redis::aio::ConnectionLike for HealingConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            match self.0.send_packed_command(cmd).await {
                Err(e) if is_broken_connection(&e) => {
                    log::debug!("Redis connection was broken ({e}); running the command again");
                    self.0.send_packed_command(cmd).await
                }
                other => other,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            match self.0.send_packed_commands(pipeline, offset, count).await {
                Err(e) if is_broken_connection(&e) => {
                    log::debug!("Redis connection was broken ({e}); running the pipeline again");
                    self.0.send_packed_commands(pipeline, offset, count).await
                }
                other => other,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// A pool of Redis connections for short commands (never blocking reads).
pub type RedisPool = bb8::Pool<RedisManager>;

/// Builds the pool without connecting, so the gateway starts (and answers 503) while Redis is down.
pub fn pool(settings: &RedisSettings) -> Result<RedisPool, redis::RedisError> {
    let timeout = Duration::from_millis(settings.enqueue_timeout_ms);
    let manager = RedisManager::new(settings.url.as_str(), timeout)?;
    Ok(bb8::Pool::builder()
        .max_size(settings.pool_size)
        .min_idle(Some(settings.pool_size.min(4)))
        .connection_timeout(timeout)
        // A broken connection is found by the command that uses it and heals itself;
        // checking each checkout would double the round trips on the ingest path.
        .test_on_check_out(false)
        .retry_connection(true)
        .build_unchecked(manager))
}

/// De-duplication and stream append as one atomic step.
///
/// KEYS[1] dedup key, KEYS[2] stream. ARGV[1] event id, ARGV[2] dedup TTL seconds, then the
/// entry's fields. Returns `{1, stream id}` when queued or `{0, first event id}` when the key
/// was seen. If the XADD fails the dedup key is removed again, so a failed enqueue never
/// leaves a key behind and the sender's retry is accepted.
pub const ENQUEUE_LUA: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[1])}
end
local sid = redis.pcall('XADD', KEYS[2], '*',
  'id', ARGV[1], 'key', ARGV[3], 'type', ARGV[4], 'ts', ARGV[5],
  'ct', ARGV[6], 'hdr', ARGV[7], 'body', ARGV[8])
if type(sid) == 'table' and sid.err then
  redis.call('DEL', KEYS[1])
  return redis.error_reply(sid.err)
end
return {1, sid}
"#;

/// Creates a consumer group (and its stream) starting from the first entry; an existing
/// group is left as it is. Called at start and again whenever Redis answers `NOGROUP`.
pub async fn ensure_group(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
    group: &str,
) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Whether an error says the consumer group is gone (Redis restarted empty, or deleted).
/// Redis keeps the code when the command ran inside a script, so the code alone decides.
pub fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// `XINFO GROUPS` of a stream, or None when the stream does not exist (yet): asked in one
/// script so that a missing stream is an answer, not an error to recognise by its text.
pub async fn stream_groups(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
) -> redis::RedisResult<Option<redis::streams::StreamInfoGroupsReply>> {
    redis::Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return false end \
         return redis.call('XINFO', 'GROUPS', KEYS[1])",
    )
    .key(stream)
    .invoke_async(conn)
    .await
}

// Settling a delivery: each outcome is recorded and the entry acknowledged in one script.
// The XACK goes first and decides: if another replica already settled the entry (it claimed
// it), this one records nothing, so an outcome is recorded exactly once per entry.
// Common arguments: KEYS[1] the stream the entry came from; ARGV[1] group, ARGV[2] entry id,
// ARGV[3] '1' to delete the entry after the ack (retry streams belong to one destination).

/// Delivered. KEYS[2] the destination's delivered counter.
pub const SETTLE_DELIVERED_LUA: &str = r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
redis.call('INCR', KEYS[2])
return 1
"#;

/// Parked for a later attempt. KEYS[2] the schedule, KEYS[3] the parked hash; ARGV[4] due
/// (ms), ARGV[5] the token, ARGV[6..] the entry's field/value pairs.
pub const SETTLE_RETRY_LUA: &str = r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
return 1
"#;

/// Dead. KEYS[2] the dead-letter stream, KEYS[3] the destination's dead counter; ARGV[4..]
/// the dead letter's field/value pairs.
pub const SETTLE_DEAD_LUA: &str = r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('INCR', KEYS[3])
return 1
"#;

/// Moves due parked deliveries into the retry stream, atomically, so exactly one replica
/// runs each. KEYS[1] schedule, KEYS[2] retry stream; ARGV[1] now (ms), ARGV[2] how many at
/// most, ARGV[3] the parked hashes' prefix. Returns how many moved.
pub const PROMOTE_DUE_LUA: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, token in ipairs(due) do
  local hash = ARGV[3] .. token
  local fields = redis.call('HGETALL', hash)
  if #fields > 0 then redis.call('XADD', KEYS[2], '*', unpack(fields)) end
  redis.call('DEL', hash)
  redis.call('ZREM', KEYS[1], token)
end
return #due
"#;

/// Takes up to ARGV[2] tokens of a fixed one-second window with ARGV[3] tokens in all.
/// KEYS[1] the window's counter. Returns how many were granted.
pub const RATE_TAKE_LUA: &str = r#"
local want = tonumber(ARGV[2])
local used = redis.call('INCRBY', KEYS[1], want)
if used == want then redis.call('PEXPIRE', KEYS[1], 2000) end
local limit = tonumber(ARGV[3])
if used <= limit then return want end
local over = math.min(want, used - limit)
redis.call('DECRBY', KEYS[1], over)
return want - over
"#;

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

#[cfg(test)]
mod redis_tests {
    use super::*;

    async fn shared_redis() -> redis::aio::MultiplexedConnection {
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        redis::Client::open(url)
            .expect("URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the shared Redis runs (scripts/dev-services.sh)")
    }

    #[actix_web::test]
    async fn a_missing_group_is_recognised_by_its_code_even_inside_a_script() {
        let mut conn = shared_redis().await;
        let stream = format!("hgtest-{}:{{s}}:stream", uuid::Uuid::new_v4().simple());
        let err =
            redis::Script::new("return redis.call('XAUTOCLAIM', KEYS[1], 'g', 'c', 0, '0-0')")
                .key(&stream)
                .invoke_async::<()>(&mut conn)
                .await
                .expect_err("no such group");
        assert!(is_nogroup(&err), "{err:?}");

        assert!(stream_groups(&mut conn, &stream)
            .await
            .expect("asked")
            .is_none());
        ensure_group(&mut conn, &stream, "g").await.expect("group");
        let groups = stream_groups(&mut conn, &stream)
            .await
            .expect("asked")
            .expect("a stream");
        assert_eq!(groups.groups.len(), 1);
        assert_eq!(groups.groups[0].name, "g");
        let _: () = redis::cmd("DEL")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}
