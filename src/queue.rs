//! Redis Streams: the connection pool and the atomic de-duplicate-and-enqueue script.

use std::time::Duration;

use bb8_redis::RedisConnectionManager;

use crate::config::RedisSettings;

/// A pool of multiplexed Redis connections for short commands (never blocking reads).
pub type RedisPool = bb8::Pool<RedisConnectionManager>;

/// Builds the pool without connecting, so the gateway starts (and answers 503) while Redis is down.
pub fn pool(settings: &RedisSettings) -> Result<RedisPool, redis::RedisError> {
    let manager = RedisConnectionManager::new(settings.url.as_str())?;
    Ok(bb8::Pool::builder()
        .max_size(settings.pool_size)
        .min_idle(Some(settings.pool_size.min(4)))
        .connection_timeout(Duration::from_millis(settings.enqueue_timeout_ms))
        // A broken connection is found by the command that uses it; checking each checkout
        // would double the round trips on the ingest path.
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
