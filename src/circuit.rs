//! Circuit breaker per destination, its state in Redis so every replica shares it.
//!
//! closed → (`failure_threshold` consecutive failures) → open for `open_seconds` → one
//! half-open probe → closed on success, open again on failure. Each worker keeps a local view
//! refreshed every [`REFRESH`], so a healthy destination costs no Redis calls, and a reset or
//! a trip on another replica is seen within that interval.
//!
//! An outcome whose attempt began before `changed_at` is a straggler and changes nothing.
//! `changed_at` is when an opening was recorded (attempts then under way tell nothing new),
//! and the start of the attempt that closed the circuit or opened it again. Any other success
//! closes the circuit, as a probe's would: a replica whose view was still closed may start
//! attempts just after another opened it, and if they deliver everything there is nothing
//! left to probe with (ignoring them left circuits open for good). So a failure begun before
//! a close does not count towards opening it again, nor does one begun before the opening
//! move it later than a success begun after.

use std::cell::RefCell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::CircuitPolicy;
pub use crate::status::CircuitStatus;

/// How stale a worker's view of the shared state may get.
pub const REFRESH: Duration = Duration::from_millis(200);

/// Grants passage: closed passes, an expired open state becomes half-open and grants one
/// probe (leased for ARGV[2] ms), anything else answers how long to wait.
/// KEYS[1] the state hash; ARGV[1] now (ms). Returns {1,0} pass, {2,0} probe, {0,wait_ms}.
const ACQUIRE_LUA: &str = r#"
local st = redis.call('HMGET', KEYS[1], 'state', 'open_until', 'probe_until')
local state = st[1] or 'closed'
local now = tonumber(ARGV[1])
if state == 'closed' then return {1, 0} end
if state == 'open' then
  local until_ms = tonumber(st[2] or '0')
  if now < until_ms then return {0, until_ms - now} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[2]))
  return {2, 0}
end
local probe_until = tonumber(st[3] or '0')
if now >= probe_until then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
  return {2, 0}
end
return {0, probe_until - now}
"#;

/// Records an outcome. KEYS[1] the state hash; ARGV[1] now (ms), ARGV[2] '1' success,
/// ARGV[3] threshold, ARGV[4] open ms, ARGV[5] when the attempt began (ms). Returns {state,
/// failures, open_until, state before}: the one call that changes the state sees the
/// change, whichever replica makes it.
const RECORD_LUA: &str = r#"
local now = tonumber(ARGV[1])
local started = tonumber(ARGV[5])
local st = redis.call('HMGET', KEYS[1], 'state', 'failures', 'open_until', 'changed_at')
local before = st[1] or 'closed'
local open_until = tonumber(st[3] or '0')
-- Begun before the last change: it tells nothing about the destination since (a straggler
-- closing or re-opening the circuit would make it flap).
if started < tonumber(st[4] or '0') then
  return {before, tonumber(st[2] or '0'), open_until, before}
end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  if before ~= 'closed' then redis.call('HSET', KEYS[1], 'changed_at', started) end
  return {'closed', 0, 0, before}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local until_ms = now + tonumber(ARGV[4])
if before ~= 'closed' then
  -- Still failing (a probe, or an attempt begun after the last change): open again.
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', until_ms, 'changed_at', started)
  return {'open', failures, until_ms, before}
end
if failures >= tonumber(ARGV[3]) then
  -- The opening: attempts under way now are stragglers to it (never moved back: clocks of
  -- replicas differ a little).
  local changed = math.max(now, tonumber(st[4] or '0'))
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', until_ms, 'changed_at', changed)
  return {'open', failures, until_ms, before}
end
return {before, failures, 0, before}
"#;

/// A change of a circuit's state worth telling an operator about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed → open, after this many consecutive failures, open until (unix ms).
    Opened { failures: u64, until_ms: u64 },
    /// Open or half-open → closed.
    Closed,
}

/// The transition from `before` to `after`, if it is one: a half-open probe that fails
/// re-opens a circuit that was never closed, which is no news.
pub fn transition(before: CircuitStatus, after: &CircuitState) -> Option<Transition> {
    match (before, after.state) {
        (CircuitStatus::Closed, CircuitStatus::Open) => Some(Transition::Opened {
            failures: after.failures,
            until_ms: after.open_until_ms,
        }),
        (CircuitStatus::Open | CircuitStatus::HalfOpen, CircuitStatus::Closed) => {
            Some(Transition::Closed)
        }
        _ => None,
    }
}

/// The state of a circuit as stored in Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CircuitState {
    /// Closed, open or half-open.
    pub state: CircuitStatus,
    /// Consecutive failures counted so far.
    pub failures: u64,
    /// Unix ms until which an open circuit stays open.
    pub open_until_ms: u64,
}

/// A stored state name; a missing one is closed, and a name neither closed nor open counts
/// as half-open, as [`ACQUIRE_LUA`] treats it.
fn stored_status(name: Option<&str>) -> CircuitStatus {
    match name.map(str::parse) {
        None => CircuitStatus::Closed,
        Some(Ok(status)) => status,
        Some(Err(_)) => CircuitStatus::HalfOpen,
    }
}

/// Reads a circuit's state.
pub async fn read(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
) -> redis::RedisResult<CircuitState> {
    Ok(read_with_change(conn, key).await?.0)
}

/// A circuit's state and when it last changed (unix ms, 0 if never; see the module doc).
async fn read_with_change(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
) -> redis::RedisResult<(CircuitState, u64)> {
    type Fields = (Option<String>, Option<u64>, Option<u64>, Option<u64>);
    let (state, failures, open_until, changed_at): Fields = redis::cmd("HMGET")
        .arg(key)
        .arg("state")
        .arg("failures")
        .arg("open_until")
        .arg("changed_at")
        .query_async(conn)
        .await?;
    let state = CircuitState {
        state: stored_status(state.as_deref()),
        failures: failures.unwrap_or(0),
        open_until_ms: open_until.unwrap_or(0),
    };
    Ok((state, changed_at.unwrap_or(0)))
}

/// The start (unix ms) of a success this replica left unreported, if the shared state now
/// shows it matters: the circuit is not closed, and the attempt began after it last changed.
fn late_success(state: CircuitStatus, changed_at_ms: u64, unreported: Option<u64>) -> Option<u64> {
    unreported.filter(|&started| state != CircuitStatus::Closed && started >= changed_at_ms)
}

/// Closes a circuit and makes every retry its schedules hold due now, backoff included (the
/// operator's reset: each partition's schedule a command of its own, since partitions live
/// in different slots on a cluster); every replica sees it within [`REFRESH`].
pub async fn reset(
    conn: &mut impl redis::aio::ConnectionLike,
    circuit_key: &str,
    schedule_keys: &[String],
) -> redis::RedisResult<()> {
    redis::cmd("HSET")
        .arg(circuit_key)
        .arg("state")
        .arg(CircuitStatus::Closed.as_str())
        .arg("failures")
        .arg(0)
        .arg("open_until")
        .arg(0)
        // Outcomes of attempts begun before the reset do not open it again.
        .arg("changed_at")
        .arg(now_ms())
        .query_async::<()>(&mut *conn)
        .await?;
    for schedule in schedule_keys {
        // Scores to 0: every scheduled retry becomes due at once.
        redis::cmd("ZUNIONSTORE")
            .arg(schedule)
            .arg(1)
            .arg(schedule)
            .arg("WEIGHTS")
            .arg(0)
            .query_async::<()>(&mut *conn)
            .await?;
    }
    Ok(())
}

/// What the breaker allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: deliver.
    Pass,
    /// Half-open: deliver exactly one, as the probe.
    Probe,
    /// Open: wait this long.
    Wait(Duration),
}

struct View {
    state: CircuitState,
    /// When the state last changed (see the module doc), as of the last refresh (unix ms).
    changed_at_ms: u64,
    refreshed: Option<Instant>,
    /// The latest start of a success not sent to Redis because the view said closed.
    unreported_success_ms: Option<u64>,
}

/// One worker's handle on a destination's shared breaker.
pub struct Circuit {
    key: String,
    policy: CircuitPolicy,
    probe_lease_ms: u64,
    acquire: redis::Script,
    record: redis::Script,
    view: RefCell<View>,
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Circuit {
    /// The breaker at `key`; a probe's lease lasts the destination timeout plus a margin.
    pub fn new(key: String, policy: CircuitPolicy, probe_lease: Duration) -> Self {
        Circuit {
            key,
            policy,
            probe_lease_ms: probe_lease.as_millis() as u64,
            acquire: redis::Script::new(ACQUIRE_LUA),
            record: redis::Script::new(RECORD_LUA),
            view: RefCell::new(View {
                state: CircuitState::default(),
                changed_at_ms: 0,
                refreshed: None,
                unreported_success_ms: None,
            }),
        }
    }

    /// Decides whether the worker may read work now, refreshing the shared view when stale.
    pub async fn gate(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<Gate> {
        let stale = self
            .view
            .borrow()
            .refreshed
            .is_none_or(|t| t.elapsed() >= REFRESH);
        if stale {
            self.refresh(conn).await?;
        }
        if self.view.borrow().state.state == CircuitStatus::Closed {
            return Ok(Gate::Pass);
        }
        let (verdict, wait): (i64, i64) = self
            .acquire
            .key(&self.key)
            .arg(now_ms())
            .arg(self.probe_lease_ms)
            .invoke_async(conn)
            .await?;
        Ok(match verdict {
            1 => {
                self.view.borrow_mut().state = CircuitState::default();
                Gate::Pass
            }
            2 => Gate::Probe,
            _ => Gate::Wait(Duration::from_millis(wait.max(1) as u64)),
        })
    }

    /// Reads the shared state into the local view.
    pub async fn refresh(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<()> {
        let (state, changed_at_ms) = read_with_change(conn, &self.key).await?;
        let mut view = self.view.borrow_mut();
        view.state = state;
        view.changed_at_ms = changed_at_ms;
        view.refreshed = Some(Instant::now());
        Ok(())
    }

    /// The start of a success this replica did not report (its view was closed) of an
    /// attempt begun after the circuit opened elsewhere: [`Circuit::record`] it, and it
    /// closes the circuit. Without this, when such attempts delivered all there was, the
    /// circuit stayed open with nothing left to probe with.
    pub fn late_success(&self) -> Option<u64> {
        let view = self.view.borrow();
        late_success(
            view.state.state,
            view.changed_at_ms,
            view.unreported_success_ms,
        )
    }

    /// Gives the half-open probe back, so that the next delivery can take it: the one that
    /// took it will not say whether the destination answers (nothing to read, no token of
    /// the rate limit, an entry filtered out or malformed, a 429).
    pub async fn give_back_probe(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<()> {
        redis::cmd("HSET")
            .arg(&self.key)
            .arg("probe_until")
            .arg(0)
            .query_async(conn)
            .await
    }

    /// Whether the local view says the circuit is open or half-open.
    pub fn is_open(&self) -> bool {
        self.view.borrow().state.state != CircuitStatus::Closed
    }

    /// Records the outcome of an attempt begun at `started_ms` (unix ms); only failures and
    /// recoveries touch Redis.
    pub async fn record(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        success: bool,
        started_ms: u64,
    ) -> redis::RedisResult<Option<Transition>> {
        {
            let mut view = self.view.borrow_mut();
            if success && view.state.state == CircuitStatus::Closed && view.state.failures == 0 {
                // Kept: the view may be stale, the circuit opened elsewhere meanwhile.
                view.unreported_success_ms = view.unreported_success_ms.max(Some(started_ms));
                return Ok(None);
            }
        }
        let (state, failures, open_until, before): (String, u64, u64, String) = self
            .record
            .key(&self.key)
            .arg(now_ms())
            .arg(if success { "1" } else { "0" })
            .arg(self.policy.failure_threshold)
            .arg(self.policy.open_seconds * 1000)
            .arg(started_ms)
            .invoke_async(conn)
            .await?;
        let now = CircuitState {
            state: stored_status(Some(&state)),
            failures,
            open_until_ms: open_until,
        };
        let change = transition(stored_status(Some(&before)), &now);
        match change {
            Some(Transition::Opened { .. }) => {
                log::warn!("circuit {} opened after {failures} failures", self.key)
            }
            Some(Transition::Closed) => log::info!("circuit {} closed", self.key),
            None if !success && now.state == CircuitStatus::Open => {
                log::debug!("circuit {} open again after {failures} failures", self.key)
            }
            None => {}
        }
        let mut view = self.view.borrow_mut();
        if success && view.unreported_success_ms <= Some(started_ms) {
            view.unreported_success_ms = None;
        }
        view.state = now;
        Ok(change)
    }
}

#[cfg(test)]
#[path = "circuit_tests.rs"]
mod tests;
