//! The admin API against real Redis, PostgreSQL and destinations.

use std::time::Duration;

use hookgate::circuit;
use hookgate::source::SourceKeys;

use crate::helpers::{eventually, spawn_app, TestApp, TestEnv};
use crate::sink::{Behaviour, Sink};

pub(crate) const TOKEN: &str = "admin-token-for-tests";

pub(crate) fn config(sink: &Sink) -> String {
    format!(
        r#"
[[sources]]
name = "orders"
kind = "github"
secrets = ["orders-secret"]
[[sources.destinations]]
name = "app"
url = "{ok}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[sources]]
name = "leads"
kind = "github"
secrets = ["leads-secret"]
[sources.circuit]
failure_threshold = 1000
[[sources.destinations]]
name = "crm"
url = "{gone}"
"#,
        ok = sink.url("/ok"),
        gone = sink.url("/gone")
    )
}

pub(crate) async fn admin_app(env: &TestEnv, sink: &Sink, token: Option<&str>) -> TestApp {
    let mut settings = env.settings(&config(sink));
    settings.admin_token = token.map(hookgate::config::Secret::new);
    spawn_app(settings).await
}

pub(crate) async fn post_events(app: &TestApp, source: &str, n: u64) -> Vec<String> {
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, answer) = app
            .post_signed(source, &hookgate::send::sample_body(base + i))
            .await;
        assert_eq!(status, 200);
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    ids
}

/// Calls `POST /api/queue/clean` until `n` entries of `source` went (entries younger than a
/// second stay for the next call); returns how many went. Young dead letters stay.
pub(crate) async fn clean_until_trimmed(app: &TestApp, source: &str, n: u64) -> u64 {
    let trimmed = std::cell::Cell::new(0);
    eventually(Duration::from_secs(10), "delivered entries trimmed", || {
        let trimmed = &trimmed;
        async move {
            let (status, body) = app.call("POST", "/api/queue/clean", Some(TOKEN)).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["data"]["removed_dead_letters"], 0);
            let went = body["data"]["sources"][source]["trimmed_entries"]
                .as_u64()
                .expect("a count");
            trimmed.set(trimmed.get() + went);
            (trimmed.get() >= n).then_some(())
        }
    })
    .await;
    trimmed.get()
}

#[actix_web::test]
async fn admin_api_is_absent_without_a_token_and_guarded_with_one() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let off = admin_app(&env, &sink, None).await;
    assert_eq!(
        off.call("GET", "/api/queue/stats", Some(TOKEN)).await.0,
        404
    );

    let on = admin_app(&env, &sink, Some(TOKEN)).await;
    for path in [
        "/api/queue/stats",
        "/api/sources",
        "/api/circuits",
        "/api/events",
    ] {
        let (status, body) = on.call("GET", path, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
        assert_eq!(on.call("GET", path, Some("wrong")).await.0, 401, "{path}");
        assert_eq!(on.call("GET", path, Some(TOKEN)).await.0, 200, "{path}");
    }
    // Every admin route, reads and writes alike, refuses a missing or wrong token before
    // doing anything, and none exists without a configured token.
    let id = "01a20000-0000-7000-8000-000000000000";
    let routes = [
        ("GET", "/api/sources".to_string()),
        ("GET", "/api/queue/stats".into()),
        ("POST", "/api/queue/clean".into()),
        ("GET", "/api/events".into()),
        ("GET", format!("/api/events/{id}")),
        ("POST", format!("/api/events/{id}/replay")),
        ("POST", "/api/events/replay".into()),
        ("GET", format!("/api/replays/{id}")),
        ("GET", "/api/circuits".into()),
        ("POST", "/api/circuits/orders/app/reset".into()),
    ];
    for (method, path) in &routes {
        for token in [None, Some("wrong"), Some("")] {
            let (status, body) = on.call(method, path, token).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path} {token:?}"
            );
        }
        assert_eq!(
            off.call(method, path, Some(TOKEN)).await.0,
            404,
            "{method} {path} without an admin token"
        );
    }
}

#[actix_web::test]
async fn sources_are_listed_without_secrets() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let app = admin_app(&env, &sink, Some(TOKEN)).await;
    let (status, body) = app.call("GET", "/api/sources", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let text = body.to_string();
    for secret in ["orders-secret", "leads-secret", "whsec_", TOKEN] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(body["sources"][1]["name"], "orders");
    assert_eq!(body["sources"][1]["destinations"][0]["signed"], true);
}

#[actix_web::test]
async fn queue_stats_match_a_known_workload() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/gone", Behaviour::Status(410));
    let app = admin_app(&env, &sink, Some(TOKEN)).await;
    post_events(&app, "orders", 5).await;
    post_events(&app, "leads", 3).await;
    let stats = eventually(Duration::from_secs(30), "settled figures", || async {
        let (_, body) = app.call("GET", "/api/queue/stats", Some(TOKEN)).await;
        let s = &body["data"]["summary"];
        (s["totalCompleted"] == 5 && s["totalFailed"] == 3).then_some(body)
    })
    .await;
    assert_eq!(stats["status"], "success");
    let orders = &stats["data"]["queues"]["orders"];
    assert_eq!(
        (
            orders["waiting"].as_u64(),
            orders["active"].as_u64(),
            orders["completed"].as_u64(),
            orders["failed"].as_u64(),
            orders["delayed"].as_u64()
        ),
        (Some(0), Some(0), Some(5), Some(0), Some(0))
    );
    let leads = &stats["data"]["queues"]["leads"];
    assert_eq!(
        (leads["completed"].as_u64(), leads["failed"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(leads["destinations"]["crm"]["failed"], 3);
    let summary = &stats["data"]["summary"];
    assert_eq!(
        (
            summary["totalWaiting"].as_u64(),
            summary["totalActive"].as_u64(),
            summary["totalDelayed"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
}

#[actix_web::test]
async fn events_page_by_cursor_and_filter() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/gone", Behaviour::Status(410));
    let app = admin_app(&env, &sink, Some(TOKEN)).await;
    let orders = post_events(&app, "orders", 7).await;
    post_events(&app, "leads", 2).await;
    env.await_events(
        "status IN ('delivered', 'dead')",
        9,
        Duration::from_secs(30),
    )
    .await;

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let path = format!("/api/events?source=orders&limit=3{cursor}");
        let (status, page) = app.call("GET", &path, Some(TOKEN)).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for e in page["events"].as_array().expect("events") {
            assert_eq!(e["source"], "orders");
            seen.push(e["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = orders.clone();
    expected.reverse(); // newest first
    assert_eq!(seen, expected, "every event once, newest first");

    let (_, dead) = app
        .call("GET", "/api/events?status=dead", Some(TOKEN))
        .await;
    assert_eq!(dead["events"].as_array().map(Vec::len), Some(2));
    let (status, err) = app
        .call("GET", "/api/events?status=nope", Some(TOKEN))
        .await;
    assert_eq!((status, err["error"].as_str()), (400, Some("bad_request")));
    let (status, err) = app
        .call("GET", "/api/events?since=yesterday", Some(TOKEN))
        .await;
    assert_eq!((status, err["error"].as_str()), (400, Some("bad_request")));
    let (_, none) = app
        .call("GET", "/api/events?since=2999-01-01T00:00:00Z", Some(TOKEN))
        .await;
    assert_eq!(none["events"].as_array().map(Vec::len), Some(0));
}

#[actix_web::test]
async fn event_detail_has_its_attempts_and_replay_delivers_again() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let app = admin_app(&env, &sink, Some(TOKEN)).await;
    let id = post_events(&app, "orders", 1).await.remove(0);
    env.await_events(
        &format!("id = '{id}' AND status = 'delivered'"),
        1,
        Duration::from_secs(30),
    )
    .await;
    let (status, event) = app
        .call("GET", &format!("/api/events/{id}"), Some(TOKEN))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["status"], "delivered");
    assert_eq!(event["payload_encoding"], "utf-8");
    assert_eq!(event["delivery_attempts"][0]["status_code"], 200);
    assert_eq!(event["deliveries"][0]["destination"], "app");

    let (status, answer) = app
        .call("POST", &format!("/api/events/{id}/replay"), Some(TOKEN))
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("queued")),
        "{answer}"
    );
    eventually(Duration::from_secs(30), "the replayed delivery", || async {
        (sink.by_event("/ok").get(&id).map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let (status, _) = app
        .call(
            "POST",
            &format!("/api/events/{id}/replay?destination=nope"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .call(
            "GET",
            "/api/events/01a20000-0000-7000-8000-000000000000",
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 404);
    let (status, err) = app.call("GET", "/api/events/not-a-uuid", Some(TOKEN)).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("bad_request")));
}

#[actix_web::test]
async fn circuit_reset_through_one_replica_is_honoured_by_another() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/ok", Behaviour::Status(500));
    let toml = config(&sink).replace(
        "[[sources.destinations]]\nname = \"app\"",
        "[sources.circuit]\nfailure_threshold = 2\nopen_seconds = 600\n[sources.retry]\nbase_delay_ms = 20\nmax_delay_ms = 50\n[[sources.destinations]]\nname = \"app\"\nmax_in_flight = 1",
    );
    let mut admin_settings = env.settings(&toml);
    admin_settings.admin_token = Some(hookgate::config::Secret::new(TOKEN));
    admin_settings.delivery.enabled = false;
    let a = spawn_app(admin_settings).await;
    let _b = spawn_app(env.settings(&toml)).await;
    let ids = post_events(&a, "orders", 3).await;
    let keys = SourceKeys::new(&env.prefix, "orders").destination("app");
    eventually(Duration::from_secs(30), "the circuit to open", || async {
        let (_, body) = a.call("GET", "/api/circuits", Some(TOKEN)).await;
        let open = body["circuits"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["destination"] == "app" && c["state"] == "open")
        });
        open.then_some(())
    })
    .await;
    sink.set("/ok", Behaviour::Ok);
    let reset_at = std::time::Instant::now();
    let (status, body) = a
        .call("POST", "/api/circuits/orders/app/reset", Some(TOKEN))
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("closed")));
    let mut r = env.redis().await;
    assert_eq!(
        circuit::read(&mut r, &keys.circuit)
            .await
            .expect("state")
            .state,
        "closed"
    );
    // Replica B delivers everything well before the 600 s the circuit would have stayed open.
    eventually(
        Duration::from_secs(20),
        "deliveries after the reset",
        || async {
            let by = sink.by_event("/ok");
            ids.iter()
                .all(|id| {
                    by.get(id)
                        .is_some_and(|v| v.iter().any(|r| r.at >= reset_at))
                })
                .then_some(())
        },
    )
    .await;
    let (status, _) = a
        .call("POST", "/api/circuits/orders/nope/reset", Some(TOKEN))
        .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn clean_trims_delivered_entries_and_old_dead_letters() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/gone", Behaviour::Status(410));
    let app = admin_app(&env, &sink, Some(TOKEN)).await;
    post_events(&app, "orders", 4).await;
    post_events(&app, "leads", 2).await;
    eventually(Duration::from_secs(30), "deliveries settled", || async {
        let (_, body) = app.call("GET", "/api/queue/stats", Some(TOKEN)).await;
        let s = &body["data"]["summary"];
        (s["totalCompleted"] == 4 && s["totalFailed"] == 2).then_some(())
    })
    .await;
    // Keep young dead letters: only the delivered entries go, once their audit rows have had
    // time to arrive (entries younger than a second stay for the next clean).
    assert_eq!(clean_until_trimmed(&app, "orders", 4).await, 4);
    assert_eq!(env.stream_len("orders").await, 0);
    assert_eq!(env.count_events("source = 'orders'").await, 4);
    let dead = SourceKeys::new(&env.prefix, "leads").dead;
    let mut r = env.redis().await;
    let n: u64 = redis::cmd("XLEN")
        .arg(&dead)
        .query_async(&mut r)
        .await
        .expect("XLEN");
    assert_eq!(n, 2);
    // With no retention, dead letters go too.
    let (_, body) = app
        .call(
            "POST",
            "/api/queue/clean?dead_older_than_seconds=0",
            Some(TOKEN),
        )
        .await;
    assert_eq!(body["data"]["removed_dead_letters"], 2);
    let n: u64 = redis::cmd("XLEN")
        .arg(&dead)
        .query_async(&mut r)
        .await
        .expect("XLEN");
    assert_eq!(n, 0);
}
