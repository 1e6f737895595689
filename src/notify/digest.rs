//! The dead-letter digest of a destination: dead letters counted in Redis as they happen,
//! taken whole by one replica once the window since the first is over.

/// Counts a dead letter. KEYS[1] the digest hash; ARGV[1] now (ms), ARGV[2] the reason (the
/// first three are kept). Returns the count.
pub const DIGEST_ADD_LUA: &str = r#"
redis.call('HSETNX', KEYS[1], 'since', ARGV[1])
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
if count <= 3 then redis.call('HSET', KEYS[1], 'reason' .. count, ARGV[2]) end
return count
"#;

/// Takes the digest if its window is over. KEYS[1] the digest hash; ARGV[1] now (ms),
/// ARGV[2] the window (ms). Returns its fields, or nothing.
pub const DIGEST_TAKE_LUA: &str = r#"
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '-1')
if since < 0 or tonumber(ARGV[1]) < since + tonumber(ARGV[2]) then return false end
local all = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return all
"#;

/// A digest taken.
pub struct Digest {
    pub count: u64,
    pub reasons: Vec<String>,
    pub since_ms: u64,
}

/// Takes `key`'s digest if its window is over.
pub async fn take(
    script: &redis::Script,
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
    window_ms: u64,
) -> redis::RedisResult<Option<Digest>> {
    let fields: Option<std::collections::HashMap<String, String>> = script
        .key(key)
        .arg(crate::circuit::now_ms())
        .arg(window_ms)
        .invoke_async(conn)
        .await?;
    Ok(fields.map(|f| {
        let num = |name: &str| f.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Digest {
            count: num("count"),
            reasons: (1..=3)
                .filter_map(|i| f.get(&format!("reason{i}")).cloned())
                .collect(),
            since_ms: num("since"),
        }
    }))
}
