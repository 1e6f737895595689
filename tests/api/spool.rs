//! The spool across processes: a replica killed while its spool holds webhooks and Redis is
//! down loses none of them, and a spool torn by a crash mid-write starts and drains the rest.

use hookgate::config::RedisTopology;
use std::time::Duration;

use hookgate::send::{sample_body, unix_now};
use hookgate::spool::{Journal, SpoolRecord};

use crate::helpers::{eventually, spawn_app, Signed, TestEnv};
use crate::redis_server::RedisServer;
use crate::sink::Sink;
use crate::takeover::Gateway;
use crate::tcp_proxy::TcpProxy;

fn config(env: &TestEnv, sink: &Sink, redis: &RedisServer) -> String {
    format!(
        r#"
[server]
bind = "127.0.0.1:0"
workers = 1
[redis]
url = "{redis}"
key_prefix = "{prefix}"
enqueue_timeout_ms = 1000
[database]
url = "{db}"
[spool]
dir = "{spool}"
[[sources]]
name = "orders"
kind = "github"
secrets = ["s3cret"]
[[sources.destinations]]
name = "app"
url = "{url}"
"#,
        redis = redis.url(),
        prefix = env.prefix,
        db = env.database_url,
        spool = env.spool_dir.display(),
        url = sink.url("/app"),
    )
}

/// Removes a file when dropped, also when the test fails.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[actix_web::test]
async fn a_replica_killed_with_webhooks_in_its_spool_loses_none_of_them() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let toml = config(&env, &sink, &redis);
    let path = std::env::temp_dir().join(format!("{}-spool.toml", env.prefix));
    std::fs::write(&path, &toml).expect("config written");
    let _config_file = RemovedOnDrop(path.clone());
    let mut settings = env.settings(&toml);
    settings.redis.topology = RedisTopology::Single(redis.url());
    let source = settings.source("orders").expect("source").clone();

    let first = Gateway::start(&path, "first");
    redis.kill();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut ids = Vec::new();
    for n in 0..40 {
        let body = sample_body(7_000 + n);
        let req = Signed::new(&source, &body, unix_now());
        let mut post = client
            .post(format!("http://127.0.0.1:{}{}", first.port, req.path))
            .insert_header(("content-type", "application/json"));
        for (k, v) in &req.headers {
            post = post.insert_header((k.as_str(), v.as_str()));
        }
        let mut res = post.send_body(body).await.expect("answered");
        let answer: serde_json::Value = res.json().await.expect("json");
        assert_eq!(res.status().as_u16(), 200, "{answer}");
        assert_eq!(answer["status"], "spooled", "{answer}");
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    // The replica dies with its spool full and Redis still down; then Redis comes back.
    first.signal("KILL");
    drop(first);
    redis.restart();

    // Another replica on the same spool volume adopts the dead one's folder and drains it.
    let _next = spawn_app(settings).await;
    sink.await_events(
        "/app",
        &ids,
        Duration::from_secs(30),
        "every spooled webhook",
    )
    .await;
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    env.await_events(&format!("id IN ({list})"), 40, Duration::from_secs(30))
        .await;
    eventually(
        Duration::from_secs(10),
        "the dead replica's folder removed",
        || async { (!env.spool_dir.join("first").exists()).then_some(()) },
    )
    .await;
}

#[actix_web::test]
async fn a_spool_torn_mid_record_starts_and_drains_the_rest() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let redis = RedisServer::start();
    // A replica that died in the middle of writing its fifth webhook.
    let dead = env.spool_dir.join("torn");
    // Posted an hour ago, to the second (within the audit trail's retention).
    let posted_s = hookgate::send::unix_now() - 3600;
    let records: Vec<SpoolRecord> = (0..5)
        .map(|n| SpoolRecord {
            source: "orders".into(),
            id: uuid::Uuid::now_v7(),
            key: format!("torn-{n}"),
            event_type: Some("push".into()),
            received_at_ms: posted_s * 1000 + n as i64,
            content_type: Some("application/json".into()),
            headers: "{}".into(),
            body: bytes::Bytes::from(format!(r#"{{"n":{n}}}"#)),
        })
        .collect();
    {
        let mut journal = Journal::open(&dead).expect("open").expect("free");
        journal.append(&records).expect("append");
    }
    let segment = std::fs::read_dir(&dead)
        .expect("folder")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let len = std::fs::metadata(&segment).expect("segment").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .and_then(|f| f.set_len(len - 7))
        .expect("torn");

    let mut settings = env.settings(&config(&env, &sink, &redis));
    settings.redis.topology = RedisTopology::Single(redis.url());
    let _app = spawn_app(settings).await;
    let whole: Vec<String> = records[..4].iter().map(|r| r.id.to_string()).collect();
    sink.await_events(
        "/app",
        &whole,
        Duration::from_secs(30),
        "the four whole webhooks",
    )
    .await;
    assert!(
        !sink
            .by_event("/app")
            .contains_key(&records[4].id.to_string()),
        "the torn record is not delivered"
    );
    // The audit row keeps the time the sender posted it.
    env.await_events(
        &format!(
            "id = '{}' AND received_at = to_timestamp({posted_s})",
            records[0].id
        ),
        1,
        Duration::from_secs(30),
    )
    .await;
}

#[actix_web::test]
async fn a_webhook_not_on_enough_replicas_in_time_is_spooled_not_refused() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let primary = RedisServer::start();
    let port = primary.port.to_string();
    let mut replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let mut settings = env.settings(&config(&env, &sink, &primary));
    settings.redis.topology = RedisTopology::Single(primary.url());
    settings.redis.min_replicas_acked = 1;
    // Long enough for a loaded machine's replica to acknowledge the first webhook (at 300 ms
    // a busy CI run answered it spooled); the second one waits it out.
    settings.redis.replica_ack_timeout_ms = 1_500;
    let client = redis::Client::open(primary.url()).expect("url");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("primary");
    eventually(Duration::from_secs(20), "the replica in sync", || {
        let mut conn = conn.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .ok()?;
            info.contains("state=online").then_some(())
        }
    })
    .await;
    let app = spawn_app(settings).await;
    let (status, answer) = app.post_signed("orders", &sample_body(1)).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("queued")),
        "{answer}"
    );

    // The only replica is gone: the primary has the webhook, but a failover could lose it.
    replica.kill();
    let (status, answer) = app.post_signed("orders", &sample_body(2)).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("spooled")),
        "{answer}"
    );
    let id = answer["id"].as_str().expect("id").to_string();
    // It is delivered once, from the primary's stream; the spool's copy is the duplicate.
    eventually(Duration::from_secs(20), "the webhook delivered", || async {
        sink.by_event("/app").contains_key(&id).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn webhooks_queued_behind_a_slow_redis_call_get_a_2xx_in_time() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let redis = RedisServer::start();
    // Each answer takes 1.6 s: under the 2 s bound. Webhooks that wait behind one call still
    // get a 2xx within their sender's 3 s (the bound plus the spool's second), by the spool.
    let proxy = TcpProxy::start(redis.port, true);
    let mut settings = env.settings(&config(&env, &sink, &redis));
    settings.redis.topology = RedisTopology::Single(format!("redis://127.0.0.1:{}", proxy.port));
    settings.redis.enqueue_timeout_ms = 2000;
    settings.server.workers = Some(1);
    let app = spawn_app(settings).await;
    let (status, _) = app.post_signed("orders", &sample_body(1)).await;
    assert_eq!(status, 200);
    proxy.delay_answers(Duration::from_millis(1600));
    let answers = futures_util::future::join_all((0..20).map(|n| {
        let app = &app;
        async move { app.post_signed("orders", &sample_body(100 + n)).await }
    }))
    .await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
    }
    assert!(
        answers.iter().any(|(_, a)| a["status"] == "spooled"),
        "the webhooks behind the slow call went to the spool"
    );
    proxy.delay_answers(Duration::ZERO);
    let ids: Vec<String> = answers
        .iter()
        .map(|(_, a)| a["id"].as_str().expect("id").to_string())
        .collect();
    sink.await_events(
        "/app",
        &ids,
        Duration::from_secs(30),
        "every webhook delivered",
    )
    .await;
}
