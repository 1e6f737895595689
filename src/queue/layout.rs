//! The partition layout's record in Redis: agreed at start, followed while running (the rule
//! itself is [`crate::partition_layout`]).

use std::collections::HashMap;
use std::time::Duration;

use super::RedisPool;
use crate::circuit::now_ms;
use crate::partition_layout::Layout;
use crate::source::Sources;

/// Reads the record, applies [`Layout::agree`] and writes it back, in one atomic step.
/// KEYS[1] the record, KEYS[2] the first partition's stream; ARGV[1] the configured count,
/// ARGV[2] now (ms), ARGV[3] the window. Returns partitions, previous, until, lanes.
const AGREE_LUA: &str = r#"
local r = redis.call('HMGET', KEYS[1], 'partitions', 'previous', 'until', 'lanes')
local n, now, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cur, prev, untl, lanes = tonumber(r[1]), tonumber(r[2]), tonumber(r[3]), tonumber(r[4])
if not cur then
  if redis.call('EXISTS', KEYS[2]) == 1 then cur = 1 else cur = n end
  prev, untl, lanes = cur, 0, cur
end
if cur ~= n then
  local in_force = cur
  if now < untl then in_force = prev end
  local new_until = 0
  if in_force ~= n then new_until = now + window end
  lanes = math.max(lanes, cur, prev, n)
  cur, prev, untl = n, in_force, new_until
  redis.call('HSET', KEYS[1], 'partitions', cur, 'previous', prev, 'until', untl, 'lanes', lanes)
elseif not r[1] then
  redis.call('HSET', KEYS[1], 'partitions', cur, 'previous', prev, 'until', untl, 'lanes', lanes)
end
return {cur, prev, untl, lanes}
"#;

/// Agrees on every source's layout with the record in Redis, bounded by `timeout`. A source
/// whose record cannot be read routes with its own setting (and says so in the log).
pub async fn agree_layouts(
    pool: &RedisPool,
    settings: &crate::config::Settings,
    timeout: Duration,
) -> Vec<(String, Layout)> {
    let script = redis::Script::new(AGREE_LUA);
    let mut out = Vec::new();
    let mut reachable = true;
    for source in &settings.sources {
        if !reachable {
            out.push((
                source.name.clone(),
                unread(&source.name, source.partitions, "Redis did not answer"),
            ));
            continue;
        }
        let keys = crate::source::SourceKeys::new(&settings.redis.key_prefix, &source.name);
        let agreed = async {
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
            Ok::<Layout, String>(Layout {
                partitions,
                previous,
                until_ms,
                lanes,
            })
        };
        let layout = match actix_web::rt::time::timeout(timeout, agreed).await {
            Ok(Ok(layout)) => layout,
            Ok(Err(e)) => {
                reachable = false;
                unread(&source.name, source.partitions, &e)
            }
            Err(_) => {
                reachable = false;
                unread(&source.name, source.partitions, "timed out")
            }
        };
        if layout.routing(now_ms()) != source.partitions {
            log::warn!(
                "source {}: partitions = {} takes effect in {} s (one de-duplication window); until then webhooks are routed to {} partition(s)",
                source.name,
                source.partitions,
                layout.until_ms.saturating_sub(now_ms()) / 1000,
                layout.routing(now_ms())
            );
        }
        out.push((source.name.clone(), layout));
    }
    out
}

fn unread(source: &str, partitions: u16, why: &str) -> Layout {
    log::warn!("source {source}: the partition layout could not be read ({why}); routing to the {partitions} configured partition(s)");
    Layout::configured(partitions)
}

/// Re-reads every source's record every `every` and moves each source to the count in force
/// (a change reaches its end, or another replica started with a new setting). Runs for the
/// life of the process.
pub async fn follow_layouts(pool: RedisPool, sources: Sources, every: Duration) {
    let mut interval = actix_web::rt::time::interval(every);
    loop {
        interval.tick().await;
        let Ok(mut conn) = pool.get().await else {
            continue;
        };
        for source in sources.iter() {
            let read: redis::RedisResult<HashMap<String, u64>> = redis::cmd("HGETALL")
                .arg(&source.keys.layout)
                .query_async(&mut *conn)
                .await;
            if let Some(layout) = read.ok().as_ref().and_then(Layout::from_fields) {
                source.follow_layout(&layout, now_ms());
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
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut conn = redis::Client::open(url)
            .expect("URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the shared Redis runs (scripts/dev-services.sh)");
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
                (got.routing(now), got.lanes(), got.routing(now + 1_000)),
                (want.routing(now), want.lanes(), want.routing(now + 1_000)),
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
