//! The Redis connection pool, over any topology: self-healing connections (see
//! [`RedisConnection`]) handed out by bb8.

use std::sync::Arc;
use std::time::Duration;

use crate::config::RedisSettings;
use crate::redis_client::{RedisClient, RedisConnection};

/// A bb8 manager of self-healing Redis connections. bb8-redis's manager would pool plain
/// connections that stay dead after a restart or a failover (it never reports one broken),
/// and knows no Sentinel or Cluster.
#[derive(Clone)]
pub struct RedisManager {
    client: Arc<RedisClient>,
}

impl RedisManager {
    /// A manager of connections to the configured topology.
    pub fn new(client: Arc<RedisClient>) -> Self {
        RedisManager { client }
    }

    /// The client the pool's connections come from.
    pub fn client(&self) -> &Arc<RedisClient> {
        &self.client
    }
}

impl bb8::ManageConnection for RedisManager {
    type Connection = RedisConnection;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        self.client.connect().await
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        redis::cmd("PING")
            .query_async::<String>(conn)
            .await
            .map(|_| ())
    }

    fn has_broken(&self, _conn: &mut Self::Connection) -> bool {
        // It heals itself: a failed command triggers a reconnect for the next one.
        false
    }
}

/// A pool of Redis connections for short commands (never blocking reads).
pub type RedisPool = bb8::Pool<RedisManager>;

/// A connection of `pool`; a pool timeout is reported as an I/O error like any other
/// unreachable Redis.
pub async fn connection(
    pool: &RedisPool,
) -> redis::RedisResult<bb8::PooledConnection<'_, RedisManager>> {
    pool.get().await.map_err(|e| match e {
        bb8::RunError::User(e) => e,
        bb8::RunError::TimedOut => {
            redis::RedisError::from((redis::ErrorKind::Io, "Redis pool timed out"))
        }
    })
}

/// Builds the pool without connecting, so the gateway starts (and answers 503) while Redis is down.
pub fn pool(settings: &RedisSettings) -> Result<RedisPool, redis::RedisError> {
    let timeout = Duration::from_millis(settings.enqueue_timeout_ms);
    let client = Arc::new(RedisClient::new(&settings.topology, timeout)?);
    Ok(pool_of(client, settings))
}

/// A pool of connections from `client`.
pub fn pool_of(client: Arc<RedisClient>, settings: &RedisSettings) -> RedisPool {
    let timeout = Duration::from_millis(settings.enqueue_timeout_ms);
    bb8::Pool::builder()
        .max_size(settings.pool_size)
        .min_idle(Some(settings.pool_size.min(4)))
        .connection_timeout(timeout)
        // A broken connection is found by the command that uses it and heals itself;
        // checking each checkout would double the round trips on the ingest path.
        .test_on_check_out(false)
        .retry_connection(true)
        .build_unchecked(RedisManager::new(client))
}
