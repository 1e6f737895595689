//! What happens when Redis or PostgreSQL misbehave, and with several replicas at once.

use hookgate::config::RedisTopology;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hookgate::send::{sample_body, unix_now};
use tokio::net::TcpListener;

use crate::helpers::{eventually, spawn_app, Signed, TestEnv};
use crate::kinds::ALL_KINDS;
use crate::redis_server::RedisServer;
use crate::tcp_proxy::TcpProxy;

#[actix_web::test]
async fn redis_unreachable_is_503_quickly() {
    let env = TestEnv::new();
    let mut settings = env.settings(ALL_KINDS);
    // Without a spool, Redis failing is a 503 (with one, the spool takes the webhook).
    settings.spool.enabled = false;
    // Nothing listens on port 1.
    settings.redis.topology = RedisTopology::Single("redis://127.0.0.1:1".into());
    let app = spawn_app(settings).await;
    let started = Instant::now();
    let (status, err) = app.post_signed("pluggy", &sample_body(1)).await;
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["error"], "unavailable");
    // The contract: never hold a sender past its 5 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let (status, ready) = app.get("/ready").await;
    assert_eq!(status, 503, "{ready}");
}

#[actix_web::test]
async fn redis_that_never_answers_is_503_within_the_bound() {
    let env = TestEnv::new();
    // A listener that accepts connections and never says a word.
    let hole = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = hole.local_addr().expect("addr").port();
    actix_web::rt::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = hole.accept().await {
            held.push(sock);
        }
    });
    let mut settings = env.settings(ALL_KINDS);
    // Without a spool, Redis failing is a 503 (with one, the spool takes the webhook).
    settings.spool.enabled = false;
    settings.redis.topology = RedisTopology::Single(format!("redis://127.0.0.1:{port}"));
    settings.redis.enqueue_timeout_ms = 1000;
    let app = spawn_app(settings).await;
    let started = Instant::now();
    let (status, err) = app.post_signed("pluggy", &sample_body(2)).await;
    assert_eq!(status, 503, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn failed_enqueue_leaves_no_dedup_key() {
    let env = TestEnv::new();
    let mut settings = env.settings(ALL_KINDS);
    // Without a spool, a failed enqueue is a 503 (with one, the spool takes the webhook).
    settings.spool.enabled = false;
    let app = spawn_app(settings).await;
    let mut r = env.redis().await;
    // Make the XADD fail: the stream key holds a string.
    let _: () = redis::cmd("SET")
        .arg(env.stream("pluggy"))
        .arg("not a stream")
        .query_async(&mut r)
        .await
        .expect("SET");
    let body = sample_body(unix_now() as u64);
    let req = Signed::new(&app.source("pluggy"), &body, unix_now());
    let (status, _) = app.post(&req.path, &req.headers, &body).await;
    assert_eq!(status, 503);
    let _: () = redis::cmd("DEL")
        .arg(env.stream("pluggy"))
        .query_async(&mut r)
        .await
        .expect("DEL");
    // The sender's retry must be accepted, not answered "duplicate".
    let (status, answer) = app.post(&req.path, &req.headers, &body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("queued")),
        "{answer}"
    );
    assert_eq!(env.stream_len("pluggy").await, 1);
}

#[actix_web::test]
async fn one_key_posted_50_times_to_three_replicas_is_enqueued_once() {
    let env = TestEnv::new();
    let settings = env.settings(ALL_KINDS);
    let apps = [
        spawn_app(settings.clone()).await,
        spawn_app(settings.clone()).await,
        spawn_app(settings).await,
    ];
    let body = sample_body(unix_now() as u64);
    let req = Signed::new(&apps[0].source("chatwoot"), &body, unix_now());
    let answers = join_all((0..50).map(|i| {
        let app = &apps[i % 3];
        let req = req.clone();
        let body = body.clone();
        async move { app.post(&req.path, &req.headers, &body).await }
    }))
    .await;
    let queued: Vec<_> = answers
        .iter()
        .filter(|(_, a)| a["status"] == "queued")
        .collect();
    let duplicates = answers
        .iter()
        .filter(|(_, a)| a["status"] == "duplicate")
        .count();
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(queued.len(), 1, "{answers:?}");
    assert_eq!(duplicates, 49);
    let id = &queued[0].1["id"];
    assert!(
        answers.iter().all(|(_, a)| &a["id"] == id),
        "every answer names the first event"
    );
    assert_eq!(env.stream_len("chatwoot").await, 1);
    let cond = format!("id = '{}'", id.as_str().expect("id"));
    env.await_events(&cond, 1, Duration::from_secs(10)).await;
    assert_eq!(env.count_events("source = 'chatwoot'").await, 1);
}

#[actix_web::test]
async fn postgres_down_does_not_fail_ingest_and_rows_arrive_when_it_is_back() {
    let env = TestEnv::new();
    let proxy = TcpProxy::start(5432, false);
    let mut settings = env.settings(ALL_KINDS);
    let db_name = env
        .database_url
        .rsplit('/')
        .next()
        .expect("db name")
        .to_string();
    settings.database.url = format!("postgres://postgres@127.0.0.1:{}/{db_name}", proxy.port);
    let app = spawn_app(settings).await;

    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, answer) = app.post_signed("pluggy", &sample_body(1_000 + i)).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("queued")),
            "{answer}"
        );
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    assert_eq!(env.stream_len("pluggy").await, 20);

    proxy.set_up(true);
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let cond = format!("id IN ({list})");
    env.await_events(&cond, 20, Duration::from_secs(30)).await;
}

#[actix_web::test]
async fn ingest_recovers_by_itself_after_redis_drops_every_connection() {
    let env = TestEnv::new();
    let proxy = TcpProxy::start(6379, true);
    let mut settings = env.settings(ALL_KINDS);
    settings.redis.topology = RedisTopology::Single(format!("redis://127.0.0.1:{}", proxy.port));
    let app = spawn_app(settings).await;
    let (status, _) = app
        .post_signed("pluggy", &sample_body(unix_now() as u64))
        .await;
    assert_eq!(status, 200);

    // Redis restarts: every open connection is cut, and it is back at once.
    proxy.cut_all();
    let mut n = 10_000;
    eventually(Duration::from_secs(20), "ingest to work again", || {
        n += 1;
        let body = sample_body(n);
        let app = &app;
        async move { (app.post_signed("pluggy", &body).await.0 == 200).then_some(()) }
    })
    .await;
    for i in 0..20 {
        let (status, answer) = app.post_signed("pluggy", &sample_body(20_000 + i)).await;
        assert_eq!(status, 200, "after recovery: {answer}");
    }
}

#[actix_web::test]
async fn no_request_sees_a_stale_connection_after_redis_restarts() {
    let env = TestEnv::new();
    let mut redis = RedisServer::start();
    let mut settings = env.settings(ALL_KINDS);
    settings.redis.topology = RedisTopology::Single(redis.url());
    settings.admin_token = Some(hookgate::config::Secret::new("restart-token"));
    let app = spawn_app(settings).await;
    // Open pooled connections on every path: ingest (several at once) and the admin API.
    let burst = |from: u64| {
        let app = &app;
        futures_util::future::join_all(
            (from..from + 10)
                .map(move |n| async move { app.post_signed("pluggy", &sample_body(n)).await }),
        )
    };
    for answer in burst(1).await {
        assert_eq!(answer.0, 200, "{}", answer.1);
    }
    for _ in 0..3 {
        let (status, body) = app
            .call("GET", "/api/queue/stats", Some("restart-token"))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    // An operator restarts Redis: every pooled connection is now dead.
    redis.shutdown();
    redis.restart();

    for _ in 0..3 {
        let (status, body) = app
            .call("GET", "/api/queue/stats", Some("restart-token"))
            .await;
        assert_eq!(status, 200, "stats right after the restart: {body}");
    }
    // 200 webhooks, ten at a time: none may meet a broken connection.
    for round in 0..20 {
        for (status, answer) in burst(1_000 + round * 10).await {
            assert_eq!(status, 200, "round {round} after the restart: {answer}");
        }
    }
}
