//! Bulk replay through the admin API: by filter, with progress seen from any replica, and
//! every body refused that is not an explicit request.

use std::time::Duration;

use crate::admin::{admin_app, post_events, TOKEN};
use crate::helpers::{eventually, TestEnv};
use crate::sink::{Behaviour, Sink};

#[actix_web::test]
async fn bulk_replay_by_filter_redelivers_with_progress_on_any_replica() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/gone", Behaviour::Status(410));
    let a = admin_app(&env, &sink, Some(TOKEN)).await;
    let b = admin_app(&env, &sink, Some(TOKEN)).await;
    let dead = post_events(&a, "leads", 12).await;
    post_events(&a, "orders", 3).await;
    env.await_events(
        "source = 'leads' AND status = 'dead'",
        12,
        Duration::from_secs(30),
    )
    .await;
    // The destination is fixed; replay every dead event of the source.
    sink.set("/gone", Behaviour::Ok);
    let (status, started) = a
        .call_json(
            "POST",
            "/api/events/replay",
            TOKEN,
            &serde_json::json!({"source": "leads", "status": "dead"}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["total"], 12);
    let replay = started["replay_id"]
        .as_str()
        .expect("replay id")
        .to_string();
    let progress = eventually(Duration::from_secs(30), "the replay to finish", || async {
        // Progress lives in Redis: the other replica answers too.
        let (_, p) = b
            .call("GET", &format!("/api/replays/{replay}"), Some(TOKEN))
            .await;
        (p["state"] == "done").then_some(p)
    })
    .await;
    assert_eq!(
        (progress["done"].as_u64(), progress["skipped"].as_u64()),
        (Some(12), Some(0))
    );
    eventually(
        Duration::from_secs(30),
        "every dead event delivered again",
        || async {
            let by = sink.by_event("/gone");
            dead.iter()
                .all(|id| by.get(id).map(Vec::len) == Some(2))
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        sink.received("/ok").len(),
        3,
        "other sources are not replayed"
    );
    let (status, _) = a
        .call(
            "GET",
            "/api/replays/01a20000-0000-7000-8000-000000000000",
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = a
        .call_json(
            "POST",
            "/api/events/replay",
            TOKEN,
            &serde_json::json!({"status": "nope"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn bulk_replay_refuses_every_body_that_is_not_an_explicit_request() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let app = admin_app(&env, &sink, Some(TOKEN)).await;
    post_events(&app, "orders", 3).await;
    env.await_events("status = 'delivered'", 3, Duration::from_secs(30))
        .await;
    let json = Some("application/json");
    let refused: [(Option<&str>, &[u8]); 9] = [
        (json, b"not json"),
        (json, b""),
        (json, b"{}"),
        (json, br#"{"sourc":"orders"}"#),
        (json, br#"{"source":"orders","limit":1}"#),
        (json, br#"{"all":"yes"}"#),
        (json, br#"{"all":true,"source":"orders"}"#),
        (None, br#"{"source":"orders"}"#),
        (Some("text/plain"), br#"{"all":true}"#),
    ];
    for (content_type, body) in refused {
        let (status, answer) = app
            .call_body("POST", "/api/events/replay", TOKEN, content_type, body)
            .await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(status, 400, "{content_type:?} {shown}: {answer}");
        assert_eq!(answer["error"], "invalid_body", "{shown}: {answer}");
        assert!(answer["message"].as_str().is_some(), "{answer}");
    }
    // Nothing was replayed: no replay was started and the stream holds only the originals.
    let mut redis = env.redis().await;
    let replays: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:replay:*", env.prefix))
        .query_async(&mut redis)
        .await
        .expect("KEYS");
    assert!(replays.is_empty(), "{replays:?}");
    assert!(env.stream_len("orders").await <= 3);
    // Unknown query parameters of the single replay are refused as well.
    let (status, answer) = app
        .call(
            "POST",
            "/api/events/01a20000-0000-7000-8000-000000000000/replay?destinaton=app",
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_request"))
    );

    // So are unknown parameters of the event list and of clean.
    for path in [
        "/api/events?sorce=orders",
        "/api/events?source=orders&stauts=dead",
    ] {
        let (status, answer) = app.call("GET", path, Some(TOKEN)).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("bad_request")),
            "{path}"
        );
    }
    let (status, _) = app
        .call("POST", "/api/queue/clean?dead_older_than=1", Some(TOKEN))
        .await;
    assert_eq!(status, 400);

    // Meaning it is enough.
    let (status, started) = app
        .call_json(
            "POST",
            "/api/events/replay",
            TOKEN,
            &serde_json::json!({"all": true}),
        )
        .await;
    assert_eq!(
        (status, started["total"].as_u64()),
        (202, Some(3)),
        "{started}"
    );
}
