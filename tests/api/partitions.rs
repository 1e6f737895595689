//! A source spread over several streams (`partitions = N`): every event delivered once,
//! de-duplicated in its partition, retried and dead-lettered there, and shown as one source.

use std::time::Duration;

use futures_util::future::join_all;
use hookgate::config::Secret;
use hookgate::send::{sample_body, unix_now};
use hookgate::source::{partition_index, SourceKeys};

use crate::helpers::{eventually, spawn_app, Signed, TestApp, TestEnv};
use crate::sink::{Behaviour, Sink};

const TOKEN: &str = "partitions-admin-token";
const PARTITIONS: u16 = 3;

fn config(sink: &Sink) -> String {
    format!(
        r#"
[[sources]]
name = "leads"
kind = "pluggy"
secrets = ["leads-secret"]
partitions = {PARTITIONS}
[sources.retry]
max_attempts = 2
base_delay_ms = 20
max_delay_ms = 50
[sources.circuit]
failure_threshold = 1000
[[sources.destinations]]
name = "flaky"
url = "{flaky}"
[[sources.destinations]]
name = "gone"
url = "{gone}"
"#,
        flaky = sink.url("/flaky"),
        gone = sink.url("/gone"),
    )
}

/// Posts the sample bodies `from..to` to `source` through `app`, all at once; the answers'
/// statuses and ids, in order.
async fn post_range(app: &TestApp, source: &str, from: u64, to: u64) -> Vec<(String, String)> {
    let source = app.source(source);
    join_all((from..to).map(|n| {
        let source = source.clone();
        async move {
            let body = sample_body(n);
            let req = Signed::new(&source, &body, unix_now());
            let (status, answer) = app.post(&req.path, &req.headers, &body).await;
            assert_eq!(status, 200, "{answer}");
            (
                answer["status"].as_str().unwrap_or("").to_string(),
                answer["id"].as_str().unwrap_or("").to_string(),
            )
        }
    }))
    .await
}

#[actix_web::test]
async fn a_partitioned_source_delivers_each_event_once_and_counts_as_one_source() {
    let env = TestEnv::new();
    let sink = Sink::start();
    // One failure per event before success: every event goes through its partition's retry
    // schedule and retry stream. The other destination dead-letters everything.
    sink.set("/flaky", Behaviour::FailFirst(1, 500));
    sink.set("/gone", Behaviour::Status(410));
    let mut settings = env.settings(&config(&sink));
    settings.admin_token = Some(Secret::new(TOKEN));
    let app = spawn_app(settings).await;

    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let first = post_range(&app, "leads", base, base + 90).await;
    assert!(first.iter().all(|(s, _)| s == "queued"), "{first:?}");
    // The same webhooks again: each partition de-duplicates its own keys.
    let again = post_range(&app, "leads", base, base + 30).await;
    assert!(again.iter().all(|(s, _)| s == "duplicate"), "{again:?}");
    for (a, b) in again.iter().zip(&first) {
        assert_eq!(a.1, b.1, "a duplicate answers the first id");
    }

    // Every partition got some of them, in its own stream.
    let mut redis = env.redis().await;
    for p in 0..PARTITIONS {
        let stream = SourceKeys::partition(&env.prefix, "leads", p).stream;
        let len: u64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut redis)
            .await
            .expect("XLEN");
        assert!(len > 0, "partition {p} holds no event");
    }
    let expected = (base..base + 90)
        .map(|n| format!("evt-{n}"))
        .map(|k| partition_index(&k, PARTITIONS as usize))
        .filter(|&p| p == 0)
        .count();
    assert!(
        expected > 0 && expected < 90,
        "keys spread: {expected} in the first"
    );

    let ids: Vec<String> = first.iter().map(|(_, id)| id.clone()).collect();
    sink.await_events(
        "/flaky",
        &ids,
        Duration::from_secs(60),
        "every event delivered after one retry",
    )
    .await;
    let stats = eventually(Duration::from_secs(30), "settled figures", || async {
        let (_, body) = app.call("GET", "/api/queue/stats", Some(TOKEN)).await;
        let s = &body["data"]["summary"];
        (s["totalCompleted"] == 90 && s["totalFailed"] == 90).then_some(body)
    })
    .await;
    let leads = &stats["data"]["queues"]["leads"];
    assert_eq!(leads["waiting"], 0, "{stats}");
    assert_eq!(leads["active"], 0, "{stats}");
    assert_eq!(leads["delayed"], 0, "{stats}");
    // Delivered once each: the failed first attempt and one success.
    let by_event = sink.by_event("/flaky");
    for id in &ids {
        assert_eq!(by_event[id].len(), 2, "{id}: one failure, one success");
    }
    assert_eq!(sink.by_event("/gone").len(), 90);

    // A replay goes to the event's own partition and is delivered again.
    let (status, body) = app
        .call(
            "POST",
            &format!("/api/events/{}/replay?destination=flaky", ids[0]),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    eventually(Duration::from_secs(30), "the replay delivered", || async {
        (sink.by_event("/flaky")[&ids[0]].len() == 3).then_some(())
    })
    .await;
}

fn resizable(sink: &Sink, partitions: u16) -> String {
    format!(
        r#"
[[sources]]
name = "items"
kind = "pluggy"
secrets = ["items-secret"]
partitions = {partitions}
dedup_ttl_seconds = 60
[[sources.destinations]]
name = "app"
url = "{url}"
"#,
        url = sink.url("/items"),
    )
}

/// Entries in each partition stream of `items`.
async fn lengths(env: &TestEnv, count: u16) -> Vec<u64> {
    let mut redis = env.redis().await;
    let mut out = Vec::new();
    for p in 0..count {
        let stream = SourceKeys::partition(&env.prefix, "items", p).stream;
        let len: u64 = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut redis)
            .await
            .expect("XLEN");
        out.push(len);
    }
    out
}

fn all_are(answers: &[(String, String)], status: &str) -> bool {
    answers.iter().all(|(s, _)| s == status)
}

#[actix_web::test]
async fn changing_partitions_on_a_running_system_loses_and_doubles_nothing() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let one = spawn_app(env.settings(&resizable(&sink, 1))).await;
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let before = post_range(&one, "items", base, base + 40).await;
    assert!(all_are(&before, "queued"), "{before:?}");

    // A replica with partitions = 4 starts: it routes to four at once, and a resend of a
    // webhook accepted before is found in the partition the old count picked.
    let four = spawn_app(env.settings(&resizable(&sink, 4))).await;
    let resent = post_range(&four, "items", base, base + 40).await;
    assert!(all_are(&resent, "duplicate"), "{resent:?}");
    for (a, b) in resent.iter().zip(&before) {
        assert_eq!(a.1, b.1, "a duplicate answers the first id");
    }
    let after = post_range(&four, "items", base + 1_000, base + 1_040).await;
    assert!(all_are(&after, "queued"), "{after:?}");
    assert!(lengths(&env, 4).await[1..].iter().sum::<u64>() > 0);

    // The old replica follows the record within seconds; then a resend through it is a
    // duplicate too.
    let followed = eventually(
        Duration::from_secs(30),
        "the old replica follows",
        || async {
            let n = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
            let lens = lengths(&env, 4).await;
            let probe = post_range(&one, "items", n, n + 8).await;
            (lengths(&env, 4).await[1..] != lens[1..]).then_some(probe)
        },
    )
    .await;
    let again = post_range(&one, "items", base + 1_000, base + 1_040).await;
    assert!(all_are(&again, "duplicate"), "{again:?}");

    // Lowered to two: resends of the four-partition webhooks are still found, and the
    // partitions no longer routed to are read until empty.
    drop(four);
    let two = spawn_app(env.settings(&resizable(&sink, 2))).await;
    let lowered = post_range(&two, "items", base + 2_000, base + 2_040).await;
    assert!(all_are(&lowered, "queued"), "{lowered:?}");
    let again = post_range(&two, "items", base + 1_000, base + 1_040).await;
    assert!(all_are(&again, "duplicate"), "{again:?}");

    let ids: Vec<String> = before
        .iter()
        .chain(&after)
        .chain(&lowered)
        .chain(&followed)
        .map(|(_, id)| id.clone())
        .collect();
    sink.await_events(
        "/items",
        &ids,
        Duration::from_secs(60),
        "every webhook delivered",
    )
    .await;
    drop(one);
    let by_event = sink.by_event("/items");
    for id in &ids {
        assert_eq!(by_event[id].len(), 1, "{id} delivered once");
    }
    // The partitions the layout added had no marker yet: marked, not taken for lost data.
    eventually(
        Duration::from_secs(30),
        "every partition marked",
        || async {
            (env.count("redis_markers", "marker LIKE '%{items%'").await == 4).then_some(())
        },
    )
    .await;
    let mut redis = env.redis().await;
    let recovered: Option<String> = redis::cmd("HGET")
        .arg(SourceKeys::new(&env.prefix, "items").recovery)
        .arg("requeued")
        .query_async(&mut redis)
        .await
        .expect("HGET");
    assert_eq!(recovered, None, "no recovery for partitions that are new");
    drop(two);
}
