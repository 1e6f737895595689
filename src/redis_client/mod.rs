//! Connections to the configured Redis topology: one server, a Sentinel-managed master that
//! is looked up again after a failover, or a Cluster whose slot map the client follows.

mod connection;
mod primaries;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, RedisResult};
use tokio::sync::{Mutex, OnceCell};

use crate::config::RedisTopology;

pub use connection::RedisConnection;
pub use primaries::Primary;

/// How long opening a connection may take (a dead host must not hold a sender up).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A client of the configured topology; cheap to share, connections come from
/// [`RedisClient::connect`].
pub struct RedisClient {
    topology: RedisTopology,
    kind: Kind,
    response_timeout: Duration,
}

enum Kind {
    Single(redis::Client),
    Sentinel(Arc<SentinelFinder>),
    Cluster(Box<ClusterKind>),
}

struct ClusterKind {
    client: ClusterClient,
    /// One multiplexed cluster connection serves every caller: each would otherwise open a
    /// connection to every node.
    shared: OnceCell<ClusterConnection>,
    /// The first seed's settings (password, db), for direct connections to masters.
    seed: redis::ConnectionInfo,
}

/// Finds the current master through the sentinels; shared by every connection so that a
/// failover is looked up once per broken connection, not per command.
pub struct SentinelFinder {
    client: Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
}

impl SentinelFinder {
    /// A new connection to the master the sentinels name now (checked with `ROLE`).
    pub(crate) async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        let client = self.master().await?;
        client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    /// A client of the current master.
    async fn master(&self) -> RedisResult<redis::Client> {
        self.client.lock().await.async_get_client().await
    }
}

/// The first URL of a list the configuration guarantees non-empty (built in code, it may not be).
fn first_of(urls: &[String]) -> RedisResult<&str> {
    urls.first().map(String::as_str).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "no Redis address given",
        ))
    })
}

impl RedisClient {
    /// A client for `topology` whose commands time out after `response_timeout`; connects
    /// nothing yet, so the gateway starts (and spools or answers 503) while Redis is down.
    pub fn new(topology: &RedisTopology, response_timeout: Duration) -> RedisResult<Self> {
        let kind = match topology {
            RedisTopology::Single(url) => Kind::Single(redis::Client::open(url.as_str())?),
            RedisTopology::Sentinel { sentinels, master } => {
                // The sentinels' credentials are the master's too (one `requirepass`).
                let first = redis::Client::open(first_of(sentinels)?)?;
                let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(
                    first.get_connection_info().redis_settings().clone(),
                );
                let client = SentinelClient::build(
                    sentinels.iter().map(String::as_str).collect(),
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                Kind::Sentinel(Arc::new(SentinelFinder {
                    client: Mutex::new(client),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(response_timeout)),
                }))
            }
            RedisTopology::Cluster(nodes) => {
                let seed = redis::Client::open(first_of(nodes)?)?
                    .get_connection_info()
                    .clone();
                let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    // MOVED/ASK and a failover are retried by the client: enough retries
                    // to outlast a failover (the callers bound their own wait and spool or
                    // retry themselves), so that a redirect never reaches them.
                    .retries(16)
                    .min_retry_wait(50)
                    .max_retry_wait(1_000)
                    .build()?;
                Kind::Cluster(Box::new(ClusterKind {
                    client,
                    shared: OnceCell::new(),
                    seed,
                }))
            }
        };
        Ok(RedisClient {
            topology: topology.clone(),
            kind,
            response_timeout,
        })
    }

    /// The topology this client serves.
    pub fn topology(&self) -> &RedisTopology {
        &self.topology
    }

    /// A connection that heals itself: see [`RedisConnection`].
    pub async fn connect(&self) -> RedisResult<RedisConnection> {
        match &self.kind {
            Kind::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(self.response_timeout))
                    // bb8 retries the connect itself, up to its own timeout.
                    .set_number_of_retries(1)
                    // The one retry comes soon: with the default 100 ms back-off, webhooks
                    // that arrive while a dead Redis is found out would wait that long.
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(50));
                ConnectionManager::new_with_config(client.clone(), config)
                    .await
                    .map(RedisConnection::Single)
            }
            Kind::Sentinel(finder) => Ok(RedisConnection::sentinel(
                finder.clone(),
                finder.connect().await?,
            )),
            Kind::Cluster(cluster) => {
                let conn = cluster
                    .shared
                    .get_or_try_init(|| cluster.client.get_async_connection())
                    .await?;
                Ok(RedisConnection::Cluster(conn.clone()))
            }
        }
    }
}
