//! The Redis connection pool: self-healing connections that retry a command once when Redis
//! restarted under them.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisSettings;

/// A bb8 manager of self-healing Redis connections. Each pooled connection is redis's
/// `aio::ConnectionManager`, which reconnects by itself after the server restarts; a pooled
/// plain `MultiplexedConnection` would stay dead, because bb8-redis never reports one broken.
#[derive(Clone)]
pub struct RedisManager {
    client: redis::Client,
    config: ConnectionManagerConfig,
}

impl RedisManager {
    /// A manager for `url`; commands time out after `response_timeout`.
    pub fn new(url: &str, response_timeout: Duration) -> redis::RedisResult<Self> {
        Ok(RedisManager {
            client: redis::Client::open(url)?,
            config: ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(response_timeout))
                // bb8 retries the connect itself, up to its own timeout.
                .set_number_of_retries(1)
                // The one retry comes soon: with the default 100 ms back-off, webhooks that
                // arrive while a dead Redis is found out would wait that long before the spool.
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(50)),
        })
    }
}

impl bb8::ManageConnection for RedisManager {
    type Connection = HealingConnection;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        ConnectionManager::new_with_config(self.client.clone(), self.config.clone())
            .await
            .map(HealingConnection)
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

/// A pooled connection that runs a command once more when the first try finds the connection
/// broken (Redis restarted since it was last used). The failure makes the inner manager
/// reconnect, and the second try waits for that new connection, so no caller sees the stale
/// one. Timeouts are not retried: that would double the sender's wait.
pub struct HealingConnection(ConnectionManager);

/// Whether a command failed because its connection was dead, not because of the command.
fn is_broken_connection(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() && !e.is_timeout()
}

impl redis::aio::ConnectionLike for HealingConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            match self.0.send_packed_command(cmd).await {
                Err(e) if is_broken_connection(&e) => {
                    log::debug!("Redis connection was broken ({e}); running the command again");
                    self.0.send_packed_command(cmd).await
                }
                other => other,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            match self.0.send_packed_commands(pipeline, offset, count).await {
                Err(e) if is_broken_connection(&e) => {
                    log::debug!("Redis connection was broken ({e}); running the pipeline again");
                    self.0.send_packed_commands(pipeline, offset, count).await
                }
                other => other,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// A pool of Redis connections for short commands (never blocking reads).
pub type RedisPool = bb8::Pool<RedisManager>;

/// Builds the pool without connecting, so the gateway starts (and answers 503) while Redis is down.
pub fn pool(settings: &RedisSettings) -> Result<RedisPool, redis::RedisError> {
    let timeout = Duration::from_millis(settings.enqueue_timeout_ms);
    let manager = RedisManager::new(settings.url.as_str(), timeout)?;
    Ok(bb8::Pool::builder()
        .max_size(settings.pool_size)
        .min_idle(Some(settings.pool_size.min(4)))
        .connection_timeout(timeout)
        // A broken connection is found by the command that uses it and heals itself;
        // checking each checkout would double the round trips on the ingest path.
        .test_on_check_out(false)
        .retry_connection(true)
        .build_unchecked(manager))
}
