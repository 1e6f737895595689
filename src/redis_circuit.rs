//! The circuit on Redis: after a failed or slow enqueue the replica stops waiting for Redis
//! and spools each webhook at once, until a probe write succeeds. Process-wide, shared by
//! every worker thread's Dispatcher, the spool's drainer and `/ready`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::queue::{RedisPool, ReplicaAcks};

/// What the replica does with a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// Enqueue in Redis.
    Up,
    /// Redis failed: spool it; a probe decides when to go back.
    Down,
}

impl RedisMode {
    /// The name `/ready` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Up => "up",
            RedisMode::Down => "down",
        }
    }
}

/// What happened on the way to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// An enqueue failed or exceeded its bound.
    Failed,
    /// A probe write (or a drain) succeeded.
    ProbeOk,
}

/// The mode after `signal`: one failure opens, only a probe closes (an enqueue that happens
/// to succeed while open was sent before the failure was seen; it proves little).
pub fn next(mode: RedisMode, signal: Signal) -> RedisMode {
    match (mode, signal) {
        (_, Signal::Failed) => RedisMode::Down,
        (_, Signal::ProbeOk) => RedisMode::Up,
    }
}

/// How often an open circuit probes Redis.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The shared circuit.
#[derive(Debug, Default)]
pub struct RedisCircuit {
    down: AtomicBool,
}

impl RedisCircuit {
    /// The current mode.
    pub fn mode(&self) -> RedisMode {
        if self.down.load(Ordering::Acquire) {
            RedisMode::Down
        } else {
            RedisMode::Up
        }
    }

    /// Records a signal; logs and exports a change of mode.
    pub fn signal(&self, signal: Signal, why: &str) {
        let before = self.mode();
        let after = next(before, signal);
        if before == after {
            return;
        }
        self.down.store(after == RedisMode::Down, Ordering::Release);
        match after {
            RedisMode::Down => log::error!("Redis circuit open ({why}): new webhooks are spooled"),
            RedisMode::Up => log::info!("Redis circuit closed ({why}): enqueueing again"),
        }
        metrics::gauge!("hookgate_redis_circuit_state").set(match after {
            RedisMode::Up => 0.0,
            RedisMode::Down => 1.0,
        });
    }

    /// While the circuit is open, tries a small write to each of `keys()` every
    /// [`PROBE_INTERVAL`] (that the replicas of `acks` acknowledge, when asked for); closes
    /// it when all succeed. One key per source: on a cluster each source's slot may live on
    /// another master, and the circuit must not close while one of them is still failing
    /// over (it would open again at the next batch, after that batch waited its full bound).
    /// Runs for the life of the process; `recovered` hears how long a closed circuit was open
    /// (as this loop saw it) and since when (unix ms).
    pub async fn probe_forever(
        &self,
        pool: RedisPool,
        keys: impl Fn() -> Vec<String>,
        timeout: Duration,
        acks: ReplicaAcks,
        recovered: impl Fn(Duration, u64),
    ) {
        let mut interval = actix_web::rt::time::interval(PROBE_INTERVAL);
        let mut down_since: Option<(std::time::Instant, u64)> = None;
        loop {
            interval.tick().await;
            if self.mode() == RedisMode::Up {
                if let Some((since, since_ms)) = down_since.take() {
                    recovered(since.elapsed(), since_ms);
                }
                continue;
            }
            down_since.get_or_insert_with(|| (std::time::Instant::now(), crate::circuit::now_ms()));
            let keys = keys();
            let write = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                for key in &keys {
                    probe_one(&mut *conn, key, acks).await?;
                }
                Ok::<(), String>(())
            };
            match actix_web::rt::time::timeout(timeout, write).await {
                Ok(Ok(())) => self.signal(Signal::ProbeOk, "a probe write succeeded"),
                Ok(Err(e)) => log::debug!("Redis probe failed: {e}"),
                Err(_) => log::debug!("Redis probe timed out"),
            }
        }
    }
}

/// One probe write: a key with a short life, on the replicas too when they are asked for.
async fn probe_one(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
    acks: ReplicaAcks,
) -> Result<(), String> {
    if acks.replicas == 0 {
        return redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("PX")
            .arg(5_000)
            .query_async::<()>(conn)
            .await
            .map_err(|e| e.to_string());
    }
    match crate::queue::replicated(conn, key, acks.replicas, acks.timeout).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "fewer than {} replicas acknowledged",
            acks.replicas
        )),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_opens_and_only_a_probe_closes() {
        assert_eq!(next(RedisMode::Up, Signal::Failed), RedisMode::Down);
        assert_eq!(next(RedisMode::Down, Signal::Failed), RedisMode::Down);
        assert_eq!(next(RedisMode::Down, Signal::ProbeOk), RedisMode::Up);
        assert_eq!(next(RedisMode::Up, Signal::ProbeOk), RedisMode::Up);
    }

    #[test]
    fn the_shared_circuit_follows_its_signals() {
        let c = RedisCircuit::default();
        assert_eq!(c.mode(), RedisMode::Up);
        c.signal(Signal::Failed, "test");
        assert_eq!(c.mode(), RedisMode::Down);
        c.signal(Signal::ProbeOk, "test");
        assert_eq!(c.mode(), RedisMode::Up);
    }
}
