//! Replay with a fresh delivery id (`new_id`): each replayed copy is a new event that receivers
//! de-duplicating on `webhook-id` do not ignore, audited under its own id.

use std::collections::HashSet;
use std::time::Duration;

use hookgate::source::SourceKeys;
use redis::streams::StreamRangeReply;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, TestApp, TestEnv};
use crate::sink::Sink;

const TOKEN: &str = "replay-new-id-token";
const WAIT: Duration = Duration::from_secs(30);

/// One source, `orders`, delivering to the sink's `/ok` (and `/crm` with `two`).
async fn app(env: &TestEnv, sink: &Sink, two: bool) -> TestApp {
    let mut toml = format!(
        r#"
[[sources]]
name = "orders"
kind = "github"
secrets = ["orders-secret"]
[[sources.destinations]]
name = "app"
url = "{}"
"#,
        sink.url("/ok")
    );
    if two {
        toml.push_str(&format!(
            "[[sources.destinations]]\nname = \"crm\"\nurl = \"{}\"\n",
            sink.url("/crm")
        ));
    }
    let mut settings = env.settings(&toml);
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN));
    spawn_app(settings).await
}

/// Posts `n` events to `orders`; their ids.
async fn post_events(app: &TestApp, n: u64) -> Vec<String> {
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, answer) = app
            .post_signed("orders", &hookgate::send::sample_body(base + i))
            .await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    ids
}

/// The fields of the stream entry of `orders` that carries event `id`.
async fn entry_of(env: &TestEnv, id: &str) -> Option<Vec<(String, String)>> {
    let mut r = env.redis().await;
    let range: StreamRangeReply = redis::cmd("XRANGE")
        .arg(env.stream("orders"))
        .arg("-")
        .arg("+")
        .query_async(&mut r)
        .await
        .expect("XRANGE");
    range
        .ids
        .iter()
        .find(|e| e.get::<String>("id").as_deref() == Some(id))
        .map(|e| {
            let mut fields: Vec<(String, String)> = e
                .map
                .keys()
                .filter(|k| k.as_str() != "body")
                .map(|k| (k.clone(), e.get::<String>(k).unwrap_or_default()))
                .collect();
            fields.sort();
            fields
        })
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn event(app: &TestApp, id: &str) -> (u16, Value) {
    app.call("GET", &format!("/api/events/{id}"), Some(TOKEN))
        .await
}

#[actix_web::test]
async fn a_replay_with_a_new_id_is_delivered_and_audited_as_a_new_event() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let app = app(&env, &sink, false).await;
    let id = post_events(&app, 1).await.remove(0);
    env.await_events(&format!("id = '{id}' AND status = 'delivered'"), 1, WAIT)
        .await;
    let (_, original) = event(&app, &id).await;

    // Without new_id the replay keeps the id: a receiver de-duplicating on it sees a resend.
    let (status, kept) = app
        .call("POST", &format!("/api/events/{id}/replay"), Some(TOKEN))
        .await;
    assert_eq!(
        (status, kept["id"].as_str()),
        (202, Some(id.as_str())),
        "{kept}"
    );
    assert!(kept.get("replay_of").is_none(), "{kept}");
    eventually(WAIT, "the replay with the same id", || async {
        (sink.by_event("/ok").get(&id).map(Vec::len) == Some(2)).then_some(())
    })
    .await;

    let (status, fresh) = app
        .call(
            "POST",
            &format!("/api/events/{id}/replay?new_id=true"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 202, "{fresh}");
    assert_eq!(
        (
            fresh["status"].as_str(),
            fresh["replay_of"].as_str(),
            fresh["destination"].as_str()
        ),
        (Some("queued"), Some(id.as_str()), Some("all")),
        "{fresh}"
    );
    assert!(fresh["stream_id"].is_string(), "{fresh}");
    let new_id = fresh["id"].as_str().expect("the new id").to_string();
    assert_ne!(new_id, id);
    assert_eq!(
        uuid::Uuid::parse_str(&new_id).map(|u| u.get_version_num()),
        Ok(7),
        "a UUIDv7"
    );

    // The sink gets it again, under the new id, with the same bytes.
    let copies = eventually(WAIT, "the copy under its new id", || async {
        sink.by_event("/ok").remove(&new_id)
    })
    .await;
    let firsts = sink.by_event("/ok").remove(&id).expect("the original");
    assert_eq!(copies[0].body, firsts[0].body);
    assert_eq!(
        sink.by_event("/ok").get(&id).map(Vec::len),
        Some(2),
        "the original is not delivered again"
    );

    // The stream entry says what it is a copy of.
    let fields = entry_of(&env, &new_id).await.expect("the copy's entry");
    assert_eq!(field(&fields, "replay_of"), Some(id.as_str()), "{fields:?}");
    assert_eq!(field(&fields, "only"), None, "{fields:?}");
    assert_eq!(field(&fields, "key"), original["idempotency_key"].as_str());

    // The audit trail has a row of its own, found by the new id, and it ends delivered.
    let audited = eventually(WAIT, "the copy delivered in the audit trail", || async {
        let (status, e) = event(&app, &new_id).await;
        (status == 200 && e["status"] == "delivered").then_some(e)
    })
    .await;
    for same in [
        "payload",
        "payload_encoding",
        "idempotency_key",
        "event_type",
        "content_type",
        "headers",
        "source",
    ] {
        assert_eq!(audited[same], original[same], "{same}: {audited}");
    }
    assert_ne!(audited["received_at"], original["received_at"]);
    assert_eq!(audited["delivery_attempts"][0]["status_code"], 200);
    // The original's row is untouched.
    let (_, after) = event(&app, &id).await;
    assert_eq!(after["status"], "delivered");
    assert_eq!(env.count_events("source = 'orders'").await, 2);
}

#[actix_web::test]
async fn new_id_must_be_true_or_false() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let app = app(&env, &sink, false).await;
    let id = post_events(&app, 1).await.remove(0);
    env.await_events(&format!("id = '{id}' AND status = 'delivered'"), 1, WAIT)
        .await;
    for bad in ["maybe", "1", "yes", ""] {
        let (status, err) = app
            .call(
                "POST",
                &format!("/api/events/{id}/replay?new_id={bad}"),
                Some(TOKEN),
            )
            .await;
        assert_eq!(
            (status, err["error"].as_str()),
            (400, Some("bad_request")),
            "new_id={bad}: {err}"
        );
        assert!(err["message"].is_string(), "{err}");
    }
    let (status, err) = app
        .call_json(
            "POST",
            "/api/events/replay",
            TOKEN,
            &json!({"source": "orders", "new_id": "yes"}),
        )
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_body")),
        "{err}"
    );
    // Nothing was queued again.
    assert_eq!(env.stream_len("orders").await, 1);
    // new_id=false is today's replay.
    let (status, kept) = app
        .call(
            "POST",
            &format!("/api/events/{id}/replay?new_id=false"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        (status, kept["id"].as_str()),
        (202, Some(id.as_str())),
        "{kept}"
    );
}

#[actix_web::test]
async fn a_new_id_replay_to_one_destination_goes_to_the_source_stream_for_it_only() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let app = app(&env, &sink, true).await;
    let id = post_events(&app, 1).await.remove(0);
    env.await_events(&format!("id = '{id}' AND status = 'delivered'"), 1, WAIT)
        .await;
    let retry = SourceKeys::new(&env.prefix, "orders")
        .destination("crm")
        .retry_stream;
    let retry_len = || async {
        let mut r = env.redis().await;
        redis::cmd("XLEN")
            .arg(&retry)
            .query_async::<u64>(&mut r)
            .await
            .expect("XLEN")
    };

    // Without new_id: the destination's retry stream, the same id.
    let (status, kept) = app
        .call(
            "POST",
            &format!("/api/events/{id}/replay?destination=crm"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        (status, kept["id"].as_str(), kept["destination"].as_str()),
        (202, Some(id.as_str()), Some("crm")),
        "{kept}"
    );
    eventually(WAIT, "the same id at crm again", || async {
        (sink.by_event("/crm").get(&id).map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let retried = retry_len().await;

    // With new_id: the source stream (the audit trail reads only those), marked for crm.
    let (status, fresh) = app
        .call(
            "POST",
            &format!("/api/events/{id}/replay?destination=crm&new_id=true"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 202, "{fresh}");
    assert_eq!(
        (fresh["destination"].as_str(), fresh["replay_of"].as_str()),
        (Some("crm"), Some(id.as_str())),
        "{fresh}"
    );
    let new_id = fresh["id"].as_str().expect("the new id").to_string();
    assert_ne!(new_id, id);
    let fields = entry_of(&env, &new_id)
        .await
        .expect("the copy is in the source stream");
    assert_eq!(field(&fields, "only"), Some("crm"), "{fields:?}");
    assert_eq!(field(&fields, "replay_of"), Some(id.as_str()), "{fields:?}");
    assert_eq!(
        retry_len().await,
        retried,
        "nothing more in crm's retry stream"
    );

    eventually(WAIT, "the copy at crm", || async {
        sink.by_event("/crm").get(&new_id).map(|_| ())
    })
    .await;
    eventually(WAIT, "the copy's audit row", || async {
        let (status, e) = event(&app, &new_id).await;
        (status == 200 && e["payload"].is_string()).then_some(())
    })
    .await;
}

#[actix_web::test]
async fn bulk_replay_with_new_ids_gives_every_copy_a_fresh_id_once() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let app = app(&env, &sink, false).await;
    let originals = post_events(&app, 6).await;
    env.await_events("status = 'delivered'", 6, WAIT).await;

    // The copies match the filter too: the replay must not replay them in turn.
    let (status, started) = app
        .call_json(
            "POST",
            "/api/events/replay",
            TOKEN,
            &json!({"source": "orders", "new_id": true}),
        )
        .await;
    assert_eq!(
        (status, started["total"].as_u64()),
        (202, Some(6)),
        "{started}"
    );
    let replay = started["replay_id"]
        .as_str()
        .expect("replay id")
        .to_string();
    let progress = eventually(WAIT, "the bulk replay to finish", || async {
        let (_, p) = app
            .call("GET", &format!("/api/replays/{replay}"), Some(TOKEN))
            .await;
        (p["state"] == "done").then_some(p)
    })
    .await;
    assert_eq!(
        (progress["done"].as_u64(), progress["skipped"].as_u64()),
        (Some(6), Some(0)),
        "{progress}"
    );
    assert_eq!(progress["request"]["new_id"], true, "{progress}");

    // Twelve events in the trail, all delivered; twelve distinct webhook-ids at the sink.
    env.await_events("source = 'orders' AND status = 'delivered'", 12, WAIT)
        .await;
    let by = eventually(WAIT, "twelve distinct deliveries", || async {
        let by = sink.by_event("/ok");
        (by.len() == 12).then_some(by)
    })
    .await;
    assert!(
        by.values().all(|copies| copies.len() == 1),
        "each id delivered once"
    );
    let fresh: HashSet<&String> = by.keys().filter(|k| !originals.contains(k)).collect();
    assert_eq!(fresh.len(), 6);
    let bodies = |ids: Vec<&String>| {
        let mut b: Vec<Vec<u8>> = ids.iter().map(|id| by[*id][0].body.to_vec()).collect();
        b.sort();
        b
    };
    assert_eq!(
        bodies(fresh.iter().copied().collect()),
        bodies(originals.iter().collect()),
        "the copies carry the originals' payloads"
    );
    for id in &fresh {
        let fields = entry_of(&env, id).await.expect("the copy's entry");
        let of = field(&fields, "replay_of").expect("replay_of");
        assert!(originals.iter().any(|o| o == of), "{fields:?}");
    }
    assert_eq!(env.count_events("source = 'orders'").await, 12);
}
