//! Redis restarted without its data: what it held is brought back from the audit trail.

use std::time::Duration;

use hookgate::config::RedisTopology;
use hookgate::source::SourceKeys;

use crate::helpers::{eventually, spawn_app, TestEnv};
use crate::redis_server::RedisServer;
use crate::sink::{Behaviour, Sink};

const EVENTS: u64 = 200;
const TOKEN: &str = "recovery-admin-token";

/// A pluggy source `name` retrying slowly to these sink paths (destinations named after them),
/// on a private Redis without persistence (a restart comes back empty), once its partition
/// is marked.
async fn recovering_app(
    env: &TestEnv,
    sink: &Sink,
    name: &str,
    paths: &[&str],
) -> (crate::helpers::TestApp, RedisServer) {
    let redis = RedisServer::start();
    let mut toml = format!(
        "[[sources]]\nname = \"{name}\"\nkind = \"pluggy\"\nsecrets = [\"pluggy-secret\"]\n\
         [sources.retry]\nmax_attempts = 100\nbase_delay_ms = 1000\nmax_delay_ms = 2000\n\
         [sources.circuit]\nfailure_threshold = 1000000\n"
    );
    for path in paths {
        sink.set(path, Behaviour::Status(503));
        toml.push_str(&format!(
            "[[sources.destinations]]\nname = \"{}\"\nurl = \"{}\"\n",
            path.trim_start_matches('/'),
            sink.url(path)
        ));
    }
    let mut settings = env.settings(&toml);
    settings.redis.topology = RedisTopology::Single(redis.url());
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN));
    let app = spawn_app(settings).await;
    let marker = format!("marker LIKE '%{{{name}}}%'");
    eventually(Duration::from_secs(30), "the source marked", || async {
        (env.count("redis_markers", &marker).await == 1).then_some(())
    })
    .await;
    (app, redis)
}

#[actix_web::test]
async fn redis_restarted_empty_loses_no_retrying_delivery_and_keeps_its_keys() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let (app, mut redis) = recovering_app(&env, &sink, "pluggy", &["/app"]).await;

    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let mut ids = Vec::new();
    for i in 0..EVENTS {
        let (status, answer) = app
            .post_signed("pluggy", &hookgate::send::sample_body(base + i))
            .await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["id"].as_str().expect("an id").to_string());
    }
    env.await_events(
        "status = 'retrying'",
        EVENTS as i64,
        Duration::from_secs(60),
    )
    .await;

    // Redis goes away and comes back with nothing: streams, retry schedules, dedup keys.
    redis.kill();
    redis.restart();
    sink.set("/app", Behaviour::Ok);
    eventually(
        Duration::from_secs(60),
        "every retrying delivery delivered",
        || async {
            let delivered = sink.delivered("/app");
            ids.iter()
                .all(|id| delivered.contains_key(id))
                .then_some(())
        },
    )
    .await;
    env.await_events(
        "status = 'delivered'",
        EVENTS as i64,
        Duration::from_secs(60),
    )
    .await;

    // A sender's retry of one of them is still a duplicate, answered with the first id.
    let (status, answer) = app
        .post_signed("pluggy", &hookgate::send::sample_body(base + 7))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "duplicate", "{answer}");
    assert_eq!(answer["id"], ids[7].as_str(), "{answer}");

    // The recovery says what it did.
    let keys = SourceKeys::new(&env.prefix, "pluggy");
    let client = redis::Client::open(redis.url()).expect("URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test's Redis");
    let requeued: Option<u64> = redis::cmd("HGET")
        .arg(&keys.recovery)
        .arg("requeued")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert_eq!(requeued, Some(EVENTS));
    let (status, sources) = app.call("GET", "/api/sources", Some(TOKEN)).await;
    assert_eq!(status, 200, "{sources}");
    let shown = &sources["sources"][0]["recovered_from_audit"];
    assert_eq!(shown["requeued"], EVENTS, "{sources}");
    assert!(shown["at_ms"].as_u64().is_some_and(|t| t > 0), "{sources}");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "hookgate_recovered_from_audit_total{{source=\"pluggy\"}} {EVENTS}"
        )),
        "{metrics}"
    );
}

#[actix_web::test]
async fn a_replay_under_a_new_id_comes_back_as_it_was_when_redis_restarts_empty() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let (app, mut redis) = recovering_app(&env, &sink, "replayed", &["/app", "/crm"]).await;
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let (_, answer) = app
        .post_signed("replayed", &hookgate::send::sample_body(base))
        .await;
    let original = answer["id"].as_str().expect("an id").to_string();
    env.await_events(
        &format!("id = '{original}' AND status = 'retrying'"),
        1,
        Duration::from_secs(30),
    )
    .await;
    let (status, answer) = app
        .call(
            "POST",
            &format!("/api/events/{original}/replay?new_id=true&destination=crm"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let copy = answer["id"].as_str().expect("the copy's id").to_string();
    env.await_events(
        &format!("id = '{copy}' AND replay_of = '{original}' AND only_destination = 'crm' AND status = 'retrying'"),
        1,
        Duration::from_secs(30),
    )
    .await;

    redis.kill();
    redis.restart();
    sink.set("/app", Behaviour::Ok);
    sink.set("/crm", Behaviour::Ok);
    eventually(
        Duration::from_secs(60),
        "the original and its copy delivered",
        || async {
            let crm = sink.delivered("/crm");
            let app_got = sink.delivered("/app");
            (crm.contains_key(&copy)
                && crm.contains_key(&original)
                && app_got.contains_key(&original))
            .then_some(())
        },
    )
    .await;
    env.await_events(
        &format!("id IN ('{original}', '{copy}') AND status = 'delivered'"),
        2,
        Duration::from_secs(60),
    )
    .await;
    assert!(
        !sink.delivered("/app").contains_key(&copy),
        "the copy is still for crm only"
    );
    let (status, detail) = app
        .call("GET", &format!("/api/events/{copy}"), Some(TOKEN))
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["replay_of"], original.as_str(), "{detail}");
    assert_eq!(detail["only_destination"], "crm", "{detail}");
}
