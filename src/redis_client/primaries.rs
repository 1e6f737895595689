//! The masters a client writes to right now: what `/ready` and `check-config` show, and
//! whose persistence settings the durability check reads.

use redis::{ConnectionAddr, RedisResult};

use super::{Kind, RedisClient};

/// A master in use, with a client of its own for direct questions (`CONFIG GET`, `INFO`).
pub struct Primary {
    /// `host:port`, without credentials.
    pub address: String,
    /// A client of that master alone.
    pub client: redis::Client,
}

/// `host:port` of a client's address.
fn address(client: &redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

/// The `host:port` of every master serving slots in a `CLUSTER NODES` reply, sorted; nodes
/// flagged failing are left out.
pub fn cluster_masters(nodes: &str) -> Vec<(String, u16)> {
    let mut masters: Vec<(String, u16)> = nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags: Vec<&str> = fields.get(2)?.split(',').collect();
            let serving = fields.len() > 8;
            let failing = flags
                .iter()
                .any(|f| matches!(*f, "fail" | "fail?" | "noaddr" | "handshake"));
            if !flags.contains(&"master") || failing || !serving {
                return None;
            }
            // ip:port@cport[,hostname]
            let addr = fields[1].split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect();
    masters.sort();
    masters
}

impl RedisClient {
    /// The masters in use now: the one server, the master the sentinels name, or every
    /// master of the cluster.
    pub async fn primaries(&self) -> RedisResult<Vec<Primary>> {
        match &self.kind {
            Kind::Single(client) => Ok(vec![Primary {
                address: address(client),
                client: client.clone(),
            }]),
            Kind::Sentinel(finder) => {
                let client = finder.master().await?;
                Ok(vec![Primary {
                    address: address(&client),
                    client,
                }])
            }
            Kind::Cluster(cluster) => {
                let mut conn = self.connect().await?;
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await?;
                cluster_masters(&nodes)
                    .into_iter()
                    .map(|(host, port)| {
                        let info = cluster
                            .seed
                            .clone()
                            .set_addr(ConnectionAddr::Tcp(host, port));
                        let client = redis::Client::open(info)?;
                        Ok(Primary {
                            address: address(&client),
                            client,
                        })
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_has_no_password() {
        let client = |url: &str| redis::Client::open(url).expect("a URL");
        assert_eq!(
            address(&client("redis://:pw@cache.internal:6380/2")),
            "cache.internal:6380"
        );
        assert_eq!(address(&client("redis://127.0.0.1")), "127.0.0.1:6379");
    }

    #[test]
    fn only_live_masters_with_slots_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002,host-b master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 1 3 connected 10923-16383
d4 127.0.0.1:7004@17004 slave a1 0 1 1 connected
e5 127.0.0.1:7005@17005 master - 0 1 5 connected
f6 127.0.0.1:7006@17006 master - 0 1 6 connected 10923-16383
";
        assert_eq!(
            cluster_masters(nodes),
            vec![
                ("127.0.0.1".to_string(), 7001),
                ("127.0.0.1".to_string(), 7002),
                ("127.0.0.1".to_string(), 7006),
            ]
        );
    }
}
