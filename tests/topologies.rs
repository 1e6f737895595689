//! Redis topologies under fire: two gateway replicas on a Sentinel-managed master or on a
//! Redis Cluster (`scripts/redis-sentinel.sh`, `scripts/redis-cluster.sh`, on free ports in
//! folders of their own), a steady signed load, and a master SIGKILLed at 40 % of it. Every
//! webhook answered 2xx must be delivered; none may be lost; both replicas must go on
//! without a restart, and no `CROSSSLOT`, `MOVED` or panic may reach the logs.
//!
//! Its own test binary, so that it runs alone: its timings are not disturbed by other tests.

#[allow(dead_code)]
#[macro_use]
#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/fault_load.rs"]
mod fault_load;
#[path = "api/fault_log.rs"]
mod fault_log;
#[path = "api/redis_topology.rs"]
mod redis_topology;
#[allow(dead_code)]
#[path = "api/sink.rs"]
mod sink;

use std::rc::Rc;
use std::time::{Duration, Instant};

use hookgate::config::{RedisTopology, Secret, SourceConfig};
use hookgate::send::{sample_body, unix_now};
use hookgate::source::SourceKeys;

use fault_load::{check_delivered, load, RATE_PER_SECOND};
use fault_log::{forbidden_log_lines, record_logs};
use helpers::{eventually, spawn_app, Signed, TestApp, TestEnv};
use redis_topology::{free_ports, master_of, Topology};
use sink::{Behaviour, Sink};

/// The scenarios run one after the other: two topologies and four replicas at once on two
/// cores would measure the machine, not the gateway.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The addresses of the masters `/ready` names, once the first check has answered.
async fn masters(app: &TestApp, topology: &str) -> Vec<String> {
    eventually(
        Duration::from_secs(20),
        "/ready names the masters",
        || async {
            let (_, ready) = app.get("/ready").await;
            assert_eq!(ready["redis_topology"], topology, "{ready}");
            let masters: Vec<String> = ready["redis_masters"]
                .as_array()?
                .iter()
                .filter_map(|m| m["address"].as_str().map(str::to_string))
                .collect();
            (!masters.is_empty()).then_some(masters)
        },
    )
    .await
}

/// Both replicas take webhooks straight into Redis again (`queued`, not `spooled`).
async fn both_recovered(apps: &[Rc<TestApp>], source: &SourceConfig, limit: Duration) {
    for (i, app) in apps.iter().enumerate() {
        eventually(
            limit,
            &format!("replica {i} queues into Redis again"),
            || async {
                let body = sample_body(uuid::Uuid::new_v4().as_u64_pair().0 >> 16);
                let req = Signed::new(source, &body, unix_now());
                let (status, answer) = app.post(&req.path, &req.headers, &body).await;
                (status == 200 && answer["status"] == "queued").then_some(())
            },
        )
        .await;
    }
}

fn config(sink: &Sink, sources: &[&str], extra: &str) -> String {
    let mut toml = format!(
        "[redis]\nenqueue_timeout_ms = 1000\n{extra}\n[delivery]\npoll_interval_ms = 200\ntrim_interval_seconds = 2\n"
    );
    for s in sources {
        toml.push_str(&format!(
            r#"
[[sources]]
name = "{s}"
kind = "pluggy"
secrets = ["{s}-secret"]
[[sources.destinations]]
name = "app"
url = "{url}"
"#,
            url = sink.url(&format!("/{s}"))
        ));
    }
    toml
}

#[actix_web::test]
async fn sentinel_failover_mid_load_loses_no_acknowledged_webhook() {
    let _alone = ONE_AT_A_TIME.lock().await;
    record_logs();
    let port = free_ports(5, false);
    let topology = Topology::start(
        "redis-sentinel.sh",
        &[
            ("HOOKGATE_SENTINEL_PORT", port.to_string()),
            ("HOOKGATE_SENTINEL_DOWN_AFTER_MS", "1000".into()),
            ("HOOKGATE_SENTINEL_FAILOVER_TIMEOUT_MS", "3000".into()),
            (
                "HOOKGATE_SENTINEL_DEBUG",
                "info-period 1000 publish-period 500".into(),
            ),
        ],
    );
    let env = TestEnv::new();
    let sink = Sink::start();
    let mut toml = config(
        &sink,
        &["pluggy"],
        "min_replicas_acked = 1\nreplica_ack_timeout_ms = 300",
    );
    // The failover is told once, whichever replicas see it.
    toml.push_str(&format!(
        "\n[[notifications]]\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"redis\"]\n",
        sink.url("/ops")
    ));
    let mut settings = env.settings(&toml);
    settings.server.metrics_interval_seconds = 2;
    settings.redis.topology = RedisTopology::Sentinel {
        sentinels: topology.list("REDIS_SENTINELS"),
        master: topology.vars["REDIS_SENTINEL_MASTER"].clone(),
    };
    let apps = vec![
        Rc::new(spawn_app(settings.clone()).await),
        Rc::new(spawn_app(settings).await),
    ];
    assert_eq!(
        masters(&apps[0], "sentinel").await,
        vec![format!("127.0.0.1:{port}")]
    );
    let sources = vec![apps[0].source("pluggy")];

    // 3,000 webhooks over 10 s; the master dies at 4 s and is started again 4 s later, as an
    // operator would, to rejoin as the new master's replica.
    let total = RATE_PER_SECOND * 10;
    let fault = topology
        .nodes
        .clone()
        .crash(port, Duration::from_secs(4), Duration::from_secs(4));
    let sent = load(&apps, &sources, total, fault).await;
    check_delivered("sentinel failover", &sent, &sink, &sources).await;
    both_recovered(&apps, &sources[0], Duration::from_secs(60)).await;
    // The durability check follows the new master too (it re-reads every few seconds).
    eventually(
        Duration::from_secs(30),
        "/ready names the new master",
        || async {
            let now = masters(&apps[1], "sentinel").await;
            (now != vec![format!("127.0.0.1:{port}")]).then_some(())
        },
    )
    .await;
    let failovers = || {
        sink.received("/ops")
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .filter(|b| b["event"] == "redis_failover")
            .collect::<Vec<_>>()
    };
    let told = eventually(Duration::from_secs(60), "the failover told", || async {
        let all = failovers();
        (!all.is_empty()).then_some(all)
    })
    .await;
    assert_eq!(
        told[0]["from"],
        serde_json::json!([format!("127.0.0.1:{port}")]),
        "{told:?}"
    );
    // Both replicas saw it (each reads the masters every 2 s): one message.
    eventually(
        Duration::from_secs(30),
        "both replicas follow the new master",
        || async {
            let a = masters(&apps[0], "sentinel").await;
            (a != vec![format!("127.0.0.1:{port}")]).then_some(())
        },
    )
    .await;
    assert_eq!(failovers().len(), 1, "{:?}", failovers());
    let bad = forbidden_log_lines();
    assert!(bad.is_empty(), "{bad:#?}");
}

const ADMIN_TOKEN: &str = "topologies-admin-token";

/// The cluster's sources: `orders` over six partitions (with a destination that fails each
/// event once, so every partition's retry schedule, retry stream and promote script run, and
/// one that dead-letters everything), and two plain ones.
fn cluster_config(sink: &Sink) -> String {
    let mut toml = config(
        sink,
        &["c2s", "chatwoot"],
        "min_replicas_acked = 1\nreplica_ack_timeout_ms = 300",
    );
    toml.push_str(&format!(
        r#"
[[sources]]
name = "orders"
kind = "pluggy"
secrets = ["orders-secret"]
partitions = 6
[sources.retry]
max_attempts = 2
base_delay_ms = 50
max_delay_ms = 100
[sources.circuit]
failure_threshold = 100000
[[sources.destinations]]
name = "app"
url = "{app}"
[[sources.destinations]]
name = "flaky"
url = "{flaky}"
rate_limit_per_second = 5000
[[sources.destinations]]
name = "gone"
url = "{gone}"
"#,
        app = sink.url("/orders"),
        flaky = sink.url("/orders-flaky"),
        gone = sink.url("/orders-gone"),
    ));
    toml
}

#[actix_web::test]
async fn cluster_master_killed_mid_load_loses_no_acknowledged_webhook() {
    let _alone = ONE_AT_A_TIME.lock().await;
    record_logs();
    let port = free_ports(6, true);
    let topology = Topology::start(
        "redis-cluster.sh",
        &[
            ("HOOKGATE_CLUSTER_PORT", port.to_string()),
            ("HOOKGATE_CLUSTER_NODE_TIMEOUT_MS", "1000".into()),
        ],
    );
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/orders-flaky", Behaviour::FailFirst(1, 500));
    sink.set("/orders-gone", Behaviour::Status(410));
    let names = ["orders", "c2s", "chatwoot"];
    let mut settings = env.settings(&cluster_config(&sink));
    settings.admin_token = Some(Secret::new(ADMIN_TOKEN));
    let nodes = topology.list("REDIS_CLUSTER_NODES");
    settings.redis.topology = RedisTopology::Cluster(nodes.clone());
    let apps = vec![
        Rc::new(spawn_app(settings.clone()).await),
        Rc::new(spawn_app(settings).await),
    ];
    assert_eq!(masters(&apps[0], "cluster").await.len(), 3);
    let sources: Vec<SourceConfig> = names.iter().map(|n| apps[0].source(n)).collect();

    // The victim: the master of the first plain source's slot, so that its stream fails over.
    let mut conn = redis::Client::open(nodes[0].as_str())
        .expect("a node URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a node answers");
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(env.stream(names[1]))
        .query_async(&mut conn)
        .await
        .expect("KEYSLOT");
    let cluster_nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .expect("CLUSTER NODES");
    let victim = master_of(&cluster_nodes, slot).expect("a master serves the slot");

    let total = RATE_PER_SECOND * 10;
    let fault =
        topology
            .nodes
            .clone()
            .crash(victim, Duration::from_secs(4), Duration::from_secs(4));
    let sent = load(&apps, &sources, total, fault).await;
    check_delivered("cluster failover", &sent, &sink, &sources).await;
    both_recovered(&apps, &sources[1], Duration::from_secs(60)).await;

    // Every partition of orders took events, retried them and dead-lettered them.
    let orders: Vec<String> = sent
        .iter()
        .filter(|s| s.source == "orders")
        .map(|s| s.id.clone())
        .collect();
    sink.await_events(
        "/orders-flaky",
        &orders,
        Duration::from_secs(60),
        "every order delivered after a retry",
    )
    .await;
    let cluster = redis::cluster::ClusterClient::new(nodes.clone())
        .expect("cluster client")
        .get_async_connection()
        .await
        .expect("the cluster answers");
    for p in 0..6 {
        let stream = SourceKeys::partition(&env.prefix, "orders", p).stream;
        let mut conn = cluster.clone();
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .expect("the partition's stream exists");
        // The audit trail reads by a cursor, not a group.
        assert_eq!(
            groups.groups.len(),
            3,
            "{stream}: one group per destination"
        );
    }
    // Polled by hand, so that a failure shows the figures it last saw.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stats = loop {
        let (_, body) = apps[1]
            .call("GET", "/api/queue/stats", Some(ADMIN_TOKEN))
            .await;
        let failed = body["data"]["queues"]["orders"]["failed"].as_u64();
        if failed == Some(orders.len() as u64) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "orders not settled: {} dead-lettered of {}; {}",
            failed.unwrap_or(0),
            orders.len(),
            body["data"]["queues"]["orders"]
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    figure!("cluster orders: {}", stats["data"]["queues"]["orders"]);

    // A bulk replay of a source to one destination: one pipeline per partition stream.
    let (status, started) = apps[0]
        .call_json(
            "POST",
            "/api/events/replay",
            ADMIN_TOKEN,
            &serde_json::json!({"source": "orders", "destination": "app"}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let replay = started["replay_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let progress = eventually(Duration::from_secs(60), "the replay to finish", || async {
        let (_, p) = apps[1]
            .call("GET", &format!("/api/replays/{replay}"), Some(ADMIN_TOKEN))
            .await;
        (p["state"] != "running").then_some(p)
    })
    .await;
    assert_eq!(progress["state"], "done", "{progress}");
    assert_eq!(progress["done"], orders.len(), "{progress}");
    eventually(Duration::from_secs(60), "orders replayed", || async {
        let by = sink.by_event("/orders");
        orders
            .iter()
            .all(|id| by.get(id).is_some_and(|d| d.len() >= 2))
            .then_some(())
    })
    .await;
    // A circuit reset touches the circuit (first partition's slot) and every partition's
    // schedule; the trimmer (every 2 s) has trimmed delivered entries of every partition,
    // which takes the audit cursor of each partition (its lease and commit scripts) too.
    let (status, body) = apps[0]
        .call("POST", "/api/circuits/orders/gone/reset", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        Duration::from_secs(60),
        "delivered entries trimmed",
        || async {
            let mut left = 0u64;
            for p in 0..6 {
                let stream = SourceKeys::partition(&env.prefix, "orders", p).stream;
                let len: u64 = redis::cmd("XLEN")
                    .arg(&stream)
                    .query_async(&mut cluster.clone())
                    .await
                    .ok()?;
                left += len;
            }
            (left < orders.len() as u64).then_some(())
        },
    )
    .await;
    let bad = forbidden_log_lines();
    assert!(bad.is_empty(), "{bad:#?}");
}
