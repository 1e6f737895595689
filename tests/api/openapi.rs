//! Live responses checked against the OpenAPI document the gateway serves.

use std::time::Duration;

use hookgate::send::{sample_body, unix_now};
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, Answer, Signed, TestApp, TestEnv};
use crate::sink::{Behaviour, Sink};

const TOKEN: &str = "openapi-test-token";

/// Fails unless `answer` is documented for `method path` and matches its schema.
fn check(doc: &Value, method: &str, path: &str, answer: &Answer) {
    let (status, body) = answer;
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which the document does not list: {body}"
    );
    let schema = &response["content"]["application/json"]["schema"];
    if schema.is_null() {
        return;
    }
    let mut root = json!({ "$schema": "https://json-schema.org/draft/2020-12/schema", "components": doc["components"] });
    if let (Some(root), Some(schema)) = (root.as_object_mut(), schema.as_object()) {
        root.extend(schema.clone());
    }
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("schema of {method} {path} {status}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match the document: {errors:?}\n{body}"
    );
}

async fn admin(app: &TestApp, method: &str, path: &str) -> Answer {
    app.call(method, path, Some(TOKEN)).await
}

#[actix_web::test]
async fn live_responses_match_the_openapi_document() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/gone", Behaviour::Status(410));
    let toml = format!(
        r#"
[[sources]]
name = "orders"
kind = "github"
secrets = ["s"]
max_body_bytes = 4096
[[sources.destinations]]
name = "app"
url = "{ok}"
[[sources.destinations]]
name = "crm"
url = "{gone}"
"#,
        ok = sink.url("/ok"),
        gone = sink.url("/gone")
    );
    let mut settings = env.settings(&toml);
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN));
    let app = spawn_app(settings).await;

    let (status, served) = app.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(hookgate::admin::OPENAPI).expect("the document is JSON");
    assert_eq!(served, doc, "the served document is the checked-in one");

    // Ingest and its refusals.
    let body = sample_body(unix_now() as u64);
    let req = Signed::new(&app.source("orders"), &body, unix_now());
    let queued = app.post(&req.path, &req.headers, &body).await;
    check(&doc, "post", "/webhooks/{source}", &queued);
    check(
        &doc,
        "post",
        "/webhooks/{source}",
        &app.post(&req.path, &req.headers, &body).await,
    );
    check(
        &doc,
        "post",
        "/webhooks/{source}",
        &app.post(&req.path, &[], &body).await,
    );
    check(
        &doc,
        "post",
        "/webhooks/{source}",
        &app.post("/webhooks/nope", &[], &body).await,
    );
    let big = vec![b'x'; 5000];
    check(
        &doc,
        "post",
        "/webhooks/{source}",
        &app.post(&req.path, &req.headers, &big).await,
    );
    check(
        &doc,
        "post",
        "/webhooks/{source}/{token}",
        &app.post("/webhooks/orders/tok", &req.headers, &body).await,
    );
    check(&doc, "get", "/health", &app.get("/health").await);
    check(&doc, "get", "/ready", &app.get("/ready").await);

    // Admin.
    let id = queued.1["id"].as_str().expect("id").to_string();
    env.await_events(
        &format!("id = '{id}' AND status = 'dead'"),
        1,
        Duration::from_secs(30),
    )
    .await;
    check(
        &doc,
        "get",
        "/api/sources",
        &admin(&app, "GET", "/api/sources").await,
    );
    check(
        &doc,
        "get",
        "/api/sources",
        &app.call("GET", "/api/sources", Some("wrong")).await,
    );
    check(
        &doc,
        "get",
        "/api/queue/stats",
        &admin(&app, "GET", "/api/queue/stats").await,
    );
    check(
        &doc,
        "get",
        "/api/circuits",
        &admin(&app, "GET", "/api/circuits").await,
    );
    check(
        &doc,
        "get",
        "/api/latency",
        &admin(&app, "GET", "/api/latency").await,
    );
    check(
        &doc,
        "get",
        "/api/replicas",
        &admin(&app, "GET", "/api/replicas").await,
    );
    check(
        &doc,
        "get",
        "/api/events",
        &admin(&app, "GET", "/api/events?key=nothing-has-this-key").await,
    );
    check(
        &doc,
        "get",
        "/api/blocked",
        &admin(&app, "GET", "/api/blocked").await,
    );
    check(
        &doc,
        "post",
        "/api/blocked/{source}/{destination}/discard",
        &app.call_json(
            "POST",
            "/api/blocked/orders/app/discard",
            TOKEN,
            &serde_json::json!({"key": "k"}),
        )
        .await,
    );
    check(
        &doc,
        "get",
        "/api/events",
        &admin(&app, "GET", "/api/events?limit=1").await,
    );
    check(
        &doc,
        "get",
        "/api/events",
        &admin(&app, "GET", "/api/events?status=bad").await,
    );
    check(
        &doc,
        "get",
        "/api/events/{id}",
        &admin(&app, "GET", &format!("/api/events/{id}")).await,
    );
    check(
        &doc,
        "get",
        "/api/events/{id}",
        &admin(&app, "GET", "/api/events/not-a-uuid").await,
    );
    check(
        &doc,
        "post",
        "/api/events/{id}/replay",
        &admin(
            &app,
            "POST",
            &format!("/api/events/{id}/replay?destination=app"),
        )
        .await,
    );
    let fresh = admin(
        &app,
        "POST",
        &format!("/api/events/{id}/replay?destination=app&new_id=true"),
    )
    .await;
    assert_eq!(
        fresh.1["replay_of"].as_str(),
        Some(id.as_str()),
        "{}",
        fresh.1
    );
    check(&doc, "post", "/api/events/{id}/replay", &fresh);
    check(
        &doc,
        "post",
        "/api/events/{id}/replay",
        &admin(
            &app,
            "POST",
            &format!("/api/events/{id}/replay?new_id=maybe"),
        )
        .await,
    );
    let started = app
        .call_json(
            "POST",
            "/api/events/replay",
            TOKEN,
            &json!({"status": "dead"}),
        )
        .await;
    check(&doc, "post", "/api/events/replay", &started);
    let replay = started.1["replay_id"]
        .as_str()
        .expect("replay id")
        .to_string();
    let progress = eventually(Duration::from_secs(30), "the replay", || async {
        let p = admin(&app, "GET", &format!("/api/replays/{replay}")).await;
        (p.1["state"] == "done").then_some(p)
    })
    .await;
    check(&doc, "get", "/api/replays/{id}", &progress);
    check(
        &doc,
        "post",
        "/api/circuits/{source}/{destination}/reset",
        &admin(&app, "POST", "/api/circuits/orders/app/reset").await,
    );
    check(
        &doc,
        "post",
        "/api/queue/clean",
        &admin(&app, "POST", "/api/queue/clean").await,
    );
}
