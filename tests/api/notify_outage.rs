//! A replica that could not reach Redis says so, through hookgate's own notifications, once
//! it can again.

use std::time::Duration;

use hookgate::send::sample_body;

use crate::helpers::{eventually, spawn_app, TestEnv};
use crate::sink::Sink;

#[actix_web::test]
async fn a_replica_that_could_not_reach_redis_says_so_when_it_can_again() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let mut redis = crate::redis_server::RedisServer::start();
    let toml = format!(
        "[[sources]]\nname = \"gh\"\nkind = \"github\"\nsecrets = [\"g\"]\n\
         [[notifications]]\nkind = \"webhook\"\nurl = \"{}\"\nevents = [\"redis\"]\n",
        sink.url("/ops")
    );
    let mut settings = env.settings(&toml);
    settings.redis.topology = hookgate::config::RedisTopology::Single(redis.url());
    settings.server.replica_id = "replica-outage".into();
    let app = spawn_app(settings).await;
    redis.kill();
    // A webhook while Redis is away opens the replica's Redis circuit (it is spooled).
    let (status, answer) = app.post_signed("gh", &sample_body(7)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "spooled", "{answer}");
    redis.restart();
    let notice = eventually(Duration::from_secs(60), "the outage told", || async {
        sink.received("/ops").iter().find_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            (body["event"] == "redis_outage").then_some(body)
        })
    })
    .await;
    assert_eq!(notice["event"], "redis_outage", "{notice}");
    assert!(
        notice["replica"]
            .as_str()
            .is_some_and(|r| r.starts_with("replica-outage")),
        "{notice}"
    );
    assert!(notice.get("source").is_none(), "about no source: {notice}");
    let drained = eventually(
        Duration::from_secs(60),
        "the spool drained told",
        || async {
            sink.received("/ops").iter().find_map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
                (body["event"] == "redis_spool_drained").then_some(body)
            })
        },
    )
    .await;
    assert_eq!(drained["webhooks"], 1, "{drained}");
    assert!(
        notice["text"]
            .as_str()
            .is_some_and(|t| t.contains("could not write to Redis")),
        "{notice}"
    );
}
