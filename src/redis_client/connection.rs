//! A pooled connection to any topology that heals itself: a command that finds its
//! connection broken (Redis restarted, or the master failed over) runs once more on a new one.

use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

use super::SentinelFinder;

/// A connection of the configured topology. Timeouts are never retried: that would double
/// the sender's wait.
pub enum RedisConnection {
    /// redis's `ConnectionManager`, which reconnects to the same address by itself.
    Single(ConnectionManager),
    /// A connection to the master the sentinels named; dropped when it breaks or the server
    /// turned out to be a replica (`READONLY`), and found again through the sentinels.
    Sentinel {
        finder: Arc<SentinelFinder>,
        conn: Option<MultiplexedConnection>,
    },
    /// redis's cluster connection: it follows `MOVED`/`ASK` and refreshes its slot map.
    Cluster(ClusterConnection),
}

/// Whether a command failed because its connection was dead, not because of the command.
fn is_broken_connection(e: &RedisError) -> bool {
    e.is_connection_dropped() && !e.is_timeout()
}

/// Whether the server we talk to is no longer the master: a failover happened.
fn is_demoted(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::ReadOnly)
            | ErrorKind::Server(ServerErrorKind::MasterDown)
    )
}

impl RedisConnection {
    pub(super) fn sentinel(finder: Arc<SentinelFinder>, conn: MultiplexedConnection) -> Self {
        RedisConnection::Sentinel {
            finder,
            conn: Some(conn),
        }
    }
}

/// The current master connection of a sentinel connection, found again if it was dropped.
async fn master<'a>(
    finder: &Arc<SentinelFinder>,
    conn: &'a mut Option<MultiplexedConnection>,
) -> RedisResult<&'a mut MultiplexedConnection> {
    let current = match conn.take() {
        Some(c) => c,
        None => finder.connect().await?,
    };
    Ok(conn.insert(current))
}

/// Runs `op` on the master; on a broken connection or a demoted master, forgets the
/// connection and runs `op` once more on the one the sentinels name now.
macro_rules! on_master {
    ($finder:expr, $conn:expr, |$c:ident| $op:expr) => {{
        let first = {
            let $c = master($finder, $conn).await?;
            $op.await
        };
        match first {
            Err(e) if is_broken_connection(&e) || is_demoted(&e) => {
                log::debug!("Redis master connection lost ({e}); asking the sentinels again");
                *$conn = None;
                let $c = master($finder, $conn).await?;
                $op.await
            }
            Err(e) => {
                // A master that vanished without closing its sockets (host down, network
                // cut) only times out: the next command must not wait on the same dead
                // socket, but this one is not run again (that would double the wait).
                if e.is_unrecoverable_error() || e.is_timeout() {
                    *$conn = None;
                }
                Err(e)
            }
            ok => ok,
        }
    }};
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self {
                RedisConnection::Single(c) => match c.send_packed_command(cmd).await {
                    Err(e) if is_broken_connection(&e) => {
                        log::debug!("Redis connection was broken ({e}); running the command again");
                        c.send_packed_command(cmd).await
                    }
                    other => other,
                },
                RedisConnection::Sentinel { finder, conn } => {
                    on_master!(finder, conn, |c| c.req_packed_command(cmd))
                }
                RedisConnection::Cluster(c) => c.req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self {
                RedisConnection::Single(c) => {
                    match c.send_packed_commands(pipeline, offset, count).await {
                        Err(e) if is_broken_connection(&e) => {
                            log::debug!(
                                "Redis connection was broken ({e}); running the pipeline again"
                            );
                            c.send_packed_commands(pipeline, offset, count).await
                        }
                        other => other,
                    }
                }
                RedisConnection::Sentinel { finder, conn } => {
                    on_master!(finder, conn, |c| c
                        .req_packed_commands(pipeline, offset, count))
                }
                RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count).await,
            }
        })
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Sentinel { conn, .. } => conn.as_ref().map_or(0, |c| c.get_db()),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}
