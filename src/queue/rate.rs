//! The outbound rate limit of a destination: GCRA (the generic cell rate algorithm, as
//! redis-cell implements it) kept in one Redis key per destination and shared by every
//! replica.
//!
//! A fixed one-second window lets a burst at its edge through twice (the limit at the end
//! of one second, again at the start of the next); GCRA keeps one theoretical arrival time
//! (TAT) instead, so that any one-second window sees at most `r + burst` tokens, where the
//! burst is a tenth of a second's worth (at least one token).

use std::time::Duration;

/// Takes up to ARGV[1] tokens from a limiter of ARGV[2] tokens per second. KEYS[1] holds the
/// theoretical arrival time (µs of the Redis server's clock). Returns `{granted, wait µs}`,
/// the wait until one token is available when none was granted (0 otherwise).
pub const RATE_TAKE_LUA: &str = r#"
local want = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
-- The server's clock, so that replicas whose clocks disagree share one limiter (allowed in
-- Redis 7 scripts: they replicate their effects, not the script).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = 1000000 / rate
local tolerance = math.max(1, math.floor(rate / 10)) * interval
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
-- A TAT beyond the tolerance only comes from a server clock that went back (a failover to a
-- skewed replica): without the cap the limiter would stall for the skew.
if tat > now + tolerance then tat = now + tolerance end
-- The epsilon keeps a rounding error from withholding a whole token (tolerance / interval
-- may come out a hair below the burst).
local n = math.floor((now + tolerance - tat) / interval + 1e-9)
if n > want then n = want end
if n < 1 then
  return {0, math.max(1, math.ceil(tat + interval - tolerance - now))}
end
tat = tat + n * interval
-- Once the TAT has passed, the limiter is as good as new: nothing is left behind. The
-- fraction is kept (%.3f) because tostring would round the TAT to 14 digits.
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {n, 0}
"#;

/// What [`take_tokens`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateGrant {
    /// How many tokens were granted, at most the number wanted.
    pub granted: usize,
    /// When none was granted, how long until one is available (at most one emission
    /// interval); zero otherwise.
    pub wait: Duration,
}

/// Takes up to `want` tokens of the limiter at `key` ([`RATE_TAKE_LUA`] in `script`) that
/// allows `per_second` tokens a second.
pub async fn take_tokens(
    conn: &mut impl redis::aio::ConnectionLike,
    script: &redis::Script,
    key: &str,
    want: usize,
    per_second: u32,
) -> redis::RedisResult<RateGrant> {
    if per_second == 0 {
        // The configuration refuses a zero limit; dividing by it in the script would not.
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "a rate limit of 0 per second",
        )));
    }
    if want == 0 {
        return Ok(RateGrant {
            granted: 0,
            wait: Duration::ZERO,
        });
    }
    let (granted, wait_us): (usize, u64) = script
        .key(key)
        .arg(want)
        .arg(per_second)
        .invoke_async(conn)
        .await?;
    Ok(RateGrant {
        granted,
        wait: Duration::from_micros(wait_us),
    })
}

#[cfg(test)]
mod redis_tests {
    use std::time::Instant;

    use super::*;

    fn test_key() -> String {
        format!("hgtest-{}:{{d}}:rate:gcra", uuid::Uuid::new_v4().simple())
    }

    async fn delete(conn: &mut redis::aio::MultiplexedConnection, key: &str) {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(conn)
            .await
            .expect("DEL");
    }

    /// The burst a limiter of `r` per second allows, as the script computes it.
    fn burst(r: u32) -> usize {
        (r as usize / 10).max(1)
    }

    /// One call of a greedy taker: the client's clock just before and just after it, so
    /// that the server's moment of the grant lies between the two.
    struct Take {
        before: Instant,
        after: Instant,
        granted: usize,
    }

    /// Takes greedily (`want` at a time) for `run`, sleeping the reported wait when nothing
    /// was granted.
    async fn take_for(
        conn: &mut redis::aio::MultiplexedConnection,
        key: &str,
        r: u32,
        want: usize,
        run: Duration,
    ) -> Vec<Take> {
        let script = redis::Script::new(RATE_TAKE_LUA);
        let start = Instant::now();
        let mut takes = Vec::new();
        while start.elapsed() < run {
            let before = Instant::now();
            let grant = take_tokens(conn, &script, key, want, r)
                .await
                .expect("take");
            let after = Instant::now();
            takes.push(Take {
                before,
                after,
                granted: grant.granted,
            });
            if grant.granted == 0 {
                actix_web::rt::time::sleep(grant.wait).await;
            }
        }
        takes
    }

    /// The most tokens any one-second window of the server's clock certainly held: a window
    /// starting at take `i` certainly holds take `j` (taken later, on one connection) when
    /// `j` ended less than a second after `i` began, whatever the network's delays.
    fn busiest_second(takes: &[Take]) -> usize {
        (0..takes.len())
            .map(|i| {
                takes[i..]
                    .iter()
                    .take_while(|t| t.after < takes[i].before + Duration::from_secs(1))
                    .map(|t| t.granted)
                    .sum::<usize>()
            })
            .max()
            .unwrap_or(0)
    }

    /// How many tokens greedy `takes` of a limiter of `r` per second must have got at
    /// least, and over which span. Tokens are lost only while the taker is not asking and
    /// the bucket is full; a greedy take leaves it full no sooner than tolerance - interval
    /// later, so the part of a gap beyond that (a stalled machine) is not counted against
    /// the limiter.
    fn floor_of(takes: &[Take], r: u32) -> (Duration, f64) {
        let refill = Duration::from_secs(1) / r * (burst(r) as u32 - 1);
        let lost: Duration = takes
            .windows(2)
            .map(|w| (w[1].after - w[0].before).saturating_sub(refill))
            .sum();
        let span = takes[takes.len() - 1].before - takes[0].after;
        (span, r as f64 * span.saturating_sub(lost).as_secs_f64())
    }

    #[actix_web::test]
    async fn a_greedy_taker_gets_the_rate_and_no_second_holds_more_than_rate_plus_burst() {
        let mut conn = crate::queue::test_connection().await;
        let key = test_key();
        let r = 20;
        let takes = take_for(&mut conn, &key, r, 10, Duration::from_millis(2500)).await;
        delete(&mut conn, &key).await;

        let total: usize = takes.iter().map(|t| t.granted).sum();
        let busiest = busiest_second(&takes);
        assert!(
            busiest <= r as usize + burst(r),
            "{busiest} tokens in one second"
        );
        let (span, expected) = floor_of(&takes, r);
        println!("{total} tokens over {span:?}, busiest second {busiest}");
        assert!(
            total as f64 >= 0.8 * expected,
            "{total} tokens, expected about {expected}"
        );
        assert!(
            total as f64
                <= r as f64 * (takes[takes.len() - 1].after - takes[0].before).as_secs_f64()
                    + burst(r) as f64
                    + 1.0,
            "{total} tokens over {span:?}"
        );
    }

    #[actix_web::test]
    async fn a_second_boundary_does_not_double_the_limit() {
        let mut conn = crate::queue::test_connection().await;
        let key = test_key();
        let r = 20;
        // Start 100 ms before a second of the server's clock ends, and take everything until
        // 100 ms after it: a fixed window would grant r on each side.
        let (_, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .expect("TIME");
        let mut to_edge = Duration::from_secs(1) - Duration::from_micros(micros);
        if to_edge < Duration::from_millis(150) {
            to_edge += Duration::from_secs(1);
        }
        actix_web::rt::time::sleep(to_edge - Duration::from_millis(100)).await;
        let takes = take_for(&mut conn, &key, r, 1000, Duration::from_millis(200)).await;
        delete(&mut conn, &key).await;

        let total: usize = takes.iter().map(|t| t.granted).sum();
        println!("{total} tokens across a second boundary");
        assert!(total >= burst(r), "{total} tokens: the burst is granted");
        assert!(
            total <= r as usize + burst(r),
            "{total} tokens within 200 ms"
        );
    }

    #[actix_web::test]
    async fn an_empty_limiter_reports_a_wait_of_at_most_one_interval_and_expires() {
        let mut conn = crate::queue::test_connection().await;
        let key = test_key();
        let script = redis::Script::new(RATE_TAKE_LUA);
        // One token a second: the next is a second away, so the second take finds none even
        // on a slow machine (and is retried if it did not).
        let mut empty = None;
        for _ in 0..5 {
            let first = take_tokens(&mut conn, &script, &key, 10, 1)
                .await
                .expect("take");
            assert!(first.granted <= 1, "{first:?}");
            let second = take_tokens(&mut conn, &script, &key, 10, 1)
                .await
                .expect("take");
            if second.granted == 0 {
                empty = Some(second);
                break;
            }
        }
        let empty = empty.expect("an empty limiter");
        assert!(empty.wait > Duration::ZERO, "{empty:?}");
        assert!(empty.wait <= Duration::from_secs(1), "{empty:?}");
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        assert!(pttl > 0 && pttl <= 1001, "PTTL {pttl}");
        // Polled until its time to live (at most 1 s) is over, with a generous deadline.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("EXISTS");
            if !exists {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "an idle limiter leaves nothing behind"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        // Nothing wanted, nothing asked.
        let none = take_tokens(&mut conn, &script, &key, 0, 1)
            .await
            .expect("take");
        assert_eq!(none.granted, 0);
        delete(&mut conn, &key).await;
    }

    #[actix_web::test]
    async fn a_limiter_of_thousands_per_second_grants_batches_at_its_rate() {
        let mut conn = crate::queue::test_connection().await;
        let key = test_key();
        let script = redis::Script::new(RATE_TAKE_LUA);
        let r = 5000;
        // An idle limiter grants its burst at once, and no more.
        let first = take_tokens(&mut conn, &script, &key, 10_000, r)
            .await
            .expect("take");
        assert!(
            first.granted >= burst(r) && first.granted <= burst(r) + 5,
            "{first:?}"
        );
        let start = Instant::now();
        let takes = take_for(&mut conn, &key, r, 1000, Duration::from_millis(500)).await;
        let elapsed = start.elapsed();
        delete(&mut conn, &key).await;

        let total: usize = takes.iter().map(|t| t.granted).sum();
        let (span, expected) = floor_of(&takes, r);
        println!("{total} tokens at {r}/s over {span:?}");
        // The burst was taken before: the rest comes at the rate.
        assert!(
            total as f64 <= r as f64 * elapsed.as_secs_f64() + burst(r) as f64,
            "{total} tokens over {elapsed:?}"
        );
        assert!(
            total as f64 >= 0.8 * expected,
            "{total} tokens, expected about {expected}"
        );
    }
}
