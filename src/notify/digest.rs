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

/// Puts a taken digest back: its count added, its start and reasons kept if none are there.
/// KEYS[1] the digest hash; ARGV[1] since, ARGV[2] count, then up to three reasons.
const DIGEST_PUT_BACK_LUA: &str = r#"
redis.call('HSET', KEYS[1], 'since', math.min(tonumber(ARGV[1]),
  tonumber(redis.call('HGET', KEYS[1], 'since') or ARGV[1])))
redis.call('HINCRBY', KEYS[1], 'count', ARGV[2])
for i = 3, #ARGV do redis.call('HSET', KEYS[1], 'reason' .. (i - 2), ARGV[i]) end
return 1
"#;

/// Puts `digest` back under `key` (its notice could not be queued).
pub async fn put_back(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
    digest: &Digest,
) -> redis::RedisResult<()> {
    let script = redis::Script::new(DIGEST_PUT_BACK_LUA);
    let mut inv = script.prepare_invoke();
    inv.key(key).arg(digest.since_ms).arg(digest.count);
    for r in &digest.reasons {
        inv.arg(r);
    }
    inv.invoke_async::<i64>(conn).await.map(|_| ())
}

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

#[cfg(test)]
mod redis_tests {
    use super::*;

    #[actix_web::test]
    async fn a_digest_put_back_is_taken_again_with_what_came_since() {
        let mut conn = crate::queue::test_connection().await;
        let key = format!("hgtest-{}:{{s}}:digest", uuid::Uuid::new_v4().simple());
        let add = redis::Script::new(DIGEST_ADD_LUA);
        let take_script = redis::Script::new(DIGEST_TAKE_LUA);
        for reason in ["410 gone", "404"] {
            let _: i64 = add
                .key(&key)
                .arg(1_000)
                .arg(reason)
                .invoke_async(&mut conn)
                .await
                .expect("added");
        }
        assert!(
            take(&take_script, &mut conn, &key, u64::MAX / 2)
                .await
                .expect("read")
                .is_none(),
            "not before its window is over"
        );
        let taken = take(&take_script, &mut conn, &key, 0)
            .await
            .expect("read")
            .expect("taken");
        assert_eq!((taken.count, taken.since_ms), (2, 1_000));
        // Its notice could not be queued: back, and one more dead letter meanwhile.
        put_back(&mut conn, &key, &taken).await.expect("put back");
        let _: i64 = add
            .key(&key)
            .arg(5_000)
            .arg("500")
            .invoke_async(&mut conn)
            .await
            .expect("added");
        let again = take(&take_script, &mut conn, &key, 0)
            .await
            .expect("read")
            .expect("taken");
        assert_eq!((again.count, again.since_ms), (3, 1_000));
        assert_eq!(
            again.reasons[..2],
            ["410 gone".to_string(), "404".to_string()]
        );
    }
}
