//! The partition layout's record in Redis: agreed at start, followed while running (the rule
//! itself is [`crate::partition_layout`]).

use std::collections::HashMap;
use std::time::Duration;

use super::RedisPool;
use crate::circuit::now_ms;
use crate::config::{Settings, SourceConfig};
use crate::partition_layout::Layout;
use crate::source::SourceKeys;
use crate::sources::Sources;

/// Reads the record, applies [`Layout::agree`] and writes it back, in one atomic step.
/// KEYS[1] the record, KEYS[2] the first partition's stream; ARGV[1] the configured count,
/// ARGV[2] now (ms), ARGV[3] the window. Returns partitions, previous, until, lanes. A record
/// missing a field counts as none.
const AGREE_LUA: &str = r#"
local r = redis.call('HMGET', KEYS[1], 'partitions', 'previous', 'until', 'lanes')
local n, now, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cur, prev, untl, lanes = tonumber(r[1]), tonumber(r[2]), tonumber(r[3]), tonumber(r[4])
local changed = false
if not (cur and prev and untl and lanes) then
  if redis.call('EXISTS', KEYS[2]) == 1 then cur = 1 else cur = n end
  prev, untl, lanes, changed = cur, 0, cur, true
end
if cur ~= n then
  lanes = math.max(lanes, cur, n)
  prev, untl, cur, changed = cur, now + window, n, true
end
if changed then
  redis.call('HSET', KEYS[1], 'partitions', cur, 'previous', prev, 'until', untl, 'lanes', lanes)
end
return {cur, prev, untl, lanes}
"#;

/// The layouts agreed at start, and the sources whose record could not be agreed on yet
/// (Redis unreachable): [`follow_layouts`] agrees on those as soon as Redis answers.
pub struct Agreed {
    pub layouts: Vec<(String, Layout)>,
    pub pending: Vec<String>,
}

/// Runs [`AGREE_LUA`] for one source.
async fn agree_one(
    pool: &RedisPool,
    script: &redis::Script,
    keys: &SourceKeys,
    source: &SourceConfig,
) -> Result<Layout, String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let (partitions, previous, until_ms, lanes): (u16, u16, u64, u16) = script
        .key(&keys.layout)
        .key(&keys.stream)
        .arg(source.partitions)
        .arg(now_ms())
        .arg(source.dedup_ttl_seconds * 1000)
        .invoke_async(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Layout {
        partitions,
        previous,
        until_ms,
        lanes,
    })
}

/// Agrees on every source's layout with the record in Redis, bounded by `timeout` each. A
/// source whose record cannot be agreed on routes with its own setting until it can.
pub async fn agree_layouts(pool: &RedisPool, settings: &Settings, timeout: Duration) -> Agreed {
    let script = redis::Script::new(AGREE_LUA);
    let mut agreed = Agreed {
        layouts: Vec::new(),
        pending: Vec::new(),
    };
    for source in &settings.sources {
        let keys = SourceKeys::new(&settings.redis.key_prefix, &source.name);
        // Once Redis failed to answer, the other sources do not wait for it too.
        let layout = if agreed.pending.is_empty() {
            match actix_web::rt::time::timeout(timeout, agree_one(pool, &script, &keys, source))
                .await
            {
                Ok(result) => result,
                Err(_) => Err("timed out".to_string()),
            }
        } else {
            Err("Redis did not answer".to_string())
        };
        let layout = match layout {
            Ok(layout) => layout,
            Err(e) => {
                log::warn!(
                    "source {}: the partition layout could not be agreed on ({e}); routing to the {} configured partition(s) until it is",
                    source.name,
                    source.partitions
                );
                agreed.pending.push(source.name.clone());
                Layout::configured(source.partitions)
            }
        };
        if let Some(previous) = layout.previous_at(now_ms()) {
            log::info!(
                "source {}: routed to {} partition(s), asking the {previous} of the previous layout for keys for {} s more",
                source.name,
                layout.routing(),
                layout.until_ms.saturating_sub(now_ms()) / 1000
            );
        }
        agreed.layouts.push((source.name.clone(), layout));
    }
    agreed
}

/// Every `every`, agrees on the layouts still `pending`, then re-reads every source's record
/// and moves the source to it (another replica started with a new setting). Runs for the
/// life of the process.
pub async fn follow_layouts(
    pool: RedisPool,
    sources: Sources,
    mut pending: Vec<String>,
    every: Duration,
) {
    let script = redis::Script::new(AGREE_LUA);
    let mut interval = actix_web::rt::time::interval(every);
    loop {
        interval.tick().await;
        let mut still = Vec::new();
        for name in pending.drain(..) {
            let Some(source) = sources.get(&name) else {
                continue;
            };
            match agree_one(&pool, &script, &source.keys, &source.config).await {
                Ok(_) => log::info!("source {name}: partition layout agreed on"),
                Err(_) => still.push(name),
            }
        }
        pending = still;
        let Ok(mut conn) = pool.get().await else {
            continue;
        };
        for source in sources.iter() {
            let read: redis::RedisResult<HashMap<String, u64>> = redis::cmd("HGETALL")
                .arg(&source.keys.layout)
                .query_async(&mut *conn)
                .await;
            if let Some(layout) = read.ok().as_ref().and_then(Layout::from_fields) {
                source.follow_layout(&layout);
            }
        }
    }
}

#[cfg(test)]
mod redis_tests {
    use super::*;

    /// The script and [`Layout::agree`] decide alike, step by step, on a real Redis.
    #[actix_web::test]
    async fn the_script_agrees_as_the_rust_rule_does() {
        let mut conn = crate::queue::test_connection().await;
        let prefix = format!("hgtest-{}", uuid::Uuid::new_v4().simple());
        let keys = crate::source::SourceKeys::new(&prefix, "s");
        let script = redis::Script::new(AGREE_LUA);
        let _: () = redis::cmd("XADD")
            .arg(&keys.stream)
            .arg("*")
            .arg("f")
            .arg("v")
            .query_async(&mut conn)
            .await
            .expect("XADD");
        let mut expected: Option<Layout> = None;
        for (configured, now) in [(1, 0), (6, 10), (6, 20), (1, 30), (3, 5_000), (3, 9_000)] {
            expected = Some(Layout::agree(expected, true, configured, now, 1_000));
            let (partitions, previous, until_ms, lanes): (u16, u16, u64, u16) = script
                .key(&keys.layout)
                .key(&keys.stream)
                .arg(configured)
                .arg(now)
                .arg(1_000)
                .invoke_async(&mut conn)
                .await
                .expect("the script runs");
            let got = Layout {
                partitions,
                previous,
                until_ms,
                lanes,
            };
            let want = expected.expect("set");
            assert_eq!(
                (
                    got.routing(),
                    got.lanes(),
                    got.previous_at(now),
                    got.previous_at(now + 1_000)
                ),
                (
                    want.routing(),
                    want.lanes(),
                    want.previous_at(now),
                    want.previous_at(now + 1_000)
                ),
                "configured {configured} at {now}"
            );
        }
        let _: () = redis::cmd("DEL")
            .arg(&keys.layout)
            .arg(&keys.stream)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}
