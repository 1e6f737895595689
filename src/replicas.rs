//! Every replica visible: each one writes its state (its Redis circuit, its spool, the
//! configuration it runs) to Redis every few seconds, and any replica's admin API lists them
//! all, so an operator sees the whole fleet through one front door.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::circuit::now_ms;
use crate::queue::{self, RedisPool};
use crate::redis_circuit::{RedisCircuit, RedisMode};
use crate::sources::Sources;
use crate::spool::SpoolFigures;

/// How often a replica writes its state.
const EVERY: Duration = Duration::from_secs(5);
/// How long a state is kept: a replica not heard of for this long is gone.
const KEEP: Duration = Duration::from_secs(30);

/// The keys of the registry under a key prefix: the set of replicas by last report (ms),
/// and each one's state.
fn set_key(prefix: &str) -> String {
    format!("{prefix}:replicas")
}

fn state_key(prefix: &str, replica: &str) -> String {
    format!("{prefix}:replica:{replica}")
}

/// What one replica reports.
pub struct Reporter {
    pub redis: RedisPool,
    pub prefix: String,
    pub replica: String,
    pub circuit: Arc<RedisCircuit>,
    pub spool: Option<Arc<SpoolFigures>>,
    pub sources: Sources,
}

impl Reporter {
    /// The state it reports now.
    fn state(&self) -> Value {
        let (events, bytes) = self.spool.as_ref().map_or((0, 0), |s| {
            (
                s.events.load(Ordering::Relaxed),
                s.bytes.load(Ordering::Relaxed),
            )
        });
        json!({
            "replica": self.replica,
            "version": env!("CARGO_PKG_VERSION"),
            "redis": match self.circuit.mode() {
                RedisMode::Up => "up",
                RedisMode::Down => "down: spooling",
            },
            "spool": { "enabled": self.spool.is_some(), "events": events, "bytes": bytes },
            "config_generation": self.sources.generation(),
            "at_ms": now_ms(),
        })
    }

    /// Writes its state every few seconds until the process ends (while Redis is away it
    /// cannot: its entry then ages, and the list says when it was last heard of).
    pub async fn run(self) {
        let mut tick = actix_web::rt::time::interval(EVERY);
        loop {
            tick.tick().await;
            let now = now_ms();
            let written: redis::RedisResult<()> = async {
                let mut conn = queue::connection(&self.redis).await?;
                // Separate commands: the two keys may live on different nodes of a cluster.
                redis::cmd("SET")
                    .arg(state_key(&self.prefix, &self.replica))
                    .arg(self.state().to_string())
                    .arg("PX")
                    .arg(KEEP.as_millis() as u64)
                    .query_async::<()>(&mut *conn)
                    .await?;
                redis::cmd("ZADD")
                    .arg(set_key(&self.prefix))
                    .arg(now)
                    .arg(&self.replica)
                    .query_async::<()>(&mut *conn)
                    .await?;
                redis::cmd("ZREMRANGEBYSCORE")
                    .arg(set_key(&self.prefix))
                    .arg("-inf")
                    .arg(now.saturating_sub(86_400_000))
                    .query_async::<()>(&mut *conn)
                    .await
            }
            .await;
            if let Err(e) = written {
                log::debug!("replica state not written: {e}");
            }
        }
    }
}

/// Every replica heard of in the last day, newest report first: its last state while it is
/// fresh, else only when it was last heard of.
pub async fn list(
    conn: &mut impl redis::aio::ConnectionLike,
    prefix: &str,
) -> redis::RedisResult<Vec<Value>> {
    let seen: Vec<(String, u64)> = redis::cmd("ZREVRANGE")
        .arg(set_key(prefix))
        .arg(0)
        .arg(99)
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    let mut out = Vec::with_capacity(seen.len());
    for (replica, at_ms) in seen {
        let state: Option<String> = redis::cmd("GET")
            .arg(state_key(prefix, &replica))
            .query_async(conn)
            .await?;
        out.push(
            match state.and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
                Some(mut state) => {
                    state["alive"] = json!(true);
                    state
                }
                None => json!({ "replica": replica, "alive": false, "at_ms": at_ms }),
            },
        );
    }
    Ok(out)
}
