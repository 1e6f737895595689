//! Every sender kind end to end: queued, duplicate, and each way verification must fail.

use std::time::Duration;

use hookgate::config::Secret;
use hookgate::send::{sample_body, unix_now};
use serde_json::json;

use crate::helpers::{spawn_app, Signed, TestApp, TestEnv};
use crate::kinds::ALL_KINDS;

struct Case {
    source: &'static str,
    /// A secret of the same shape that the gateway does not know.
    wrong_secret: &'static str,
    /// Whether the signature covers the body (a token does not).
    signs_body: bool,
    /// Where a timestamp lives, if the scheme has one.
    timestamp: Timestamp,
}

#[derive(PartialEq)]
enum Timestamp {
    None,
    Header,
    Body,
}

fn body_for(case: &Case, n: u64, ts: Option<i64>) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&sample_body(n)).expect("sample is JSON");
    body["nonce"] = json!(uuid::Uuid::new_v4().to_string());
    if case.timestamp == Timestamp::Body {
        body["timestamp"] = json!(ts.unwrap_or_else(unix_now));
    }
    body.to_string().into_bytes()
}

fn signed(app: &TestApp, source: &str, body: &[u8], now: i64) -> Signed {
    Signed::new(&app.source(source), body, now)
}

async fn check_kind(case: Case) {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let src = case.source;
    let n = rand_n();

    // A valid request is queued, durable in the stream.
    let body = body_for(&case, n, None);
    let req = signed(&app, src, &body, unix_now());
    let (status, first) = app.post(&req.path, &req.headers, &body).await;
    assert_eq!(status, 200, "{src}: {first}");
    assert_eq!(first["status"], "queued", "{src}: {first}");
    let id = first["id"].as_str().expect("event id").to_string();
    assert_eq!(env.stream_len(src).await, 1);

    // The same request again (a sender's retry) is a duplicate carrying the first id.
    let (status, again) = app.post(&req.path, &req.headers, &body).await;
    assert_eq!(
        (status, again["status"].as_str()),
        (200, Some("duplicate")),
        "{src}: {again}"
    );
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        env.stream_len(src).await,
        1,
        "{src}: a duplicate must not be enqueued"
    );

    // Tampered body.
    if case.signs_body {
        let mut tampered = body.clone();
        let pos = tampered
            .iter()
            .position(|b| *b == b'h')
            .expect("body has an h");
        tampered[pos] = b'H';
        let (status, err) = app.post(&req.path, &req.headers, &tampered).await;
        assert_eq!(status, 401, "{src}: tampered body: {err}");
        assert!(
            err["error"].is_string() && err["message"].is_string(),
            "{src}: {err}"
        );
    }

    // Wrong secret.
    let mut wrong = app.source(src);
    wrong.secrets = vec![Secret::new(case.wrong_secret)];
    let other = body_for(&case, n + 1, None);
    let bad = Signed::new(&wrong, &other, unix_now());
    let (status, err) = app.post(&bad.path, &bad.headers, &other).await;
    assert_eq!(status, 401, "{src}: wrong secret: {err}");

    // Missing signature header (or token).
    let bare_path = format!("/webhooks/{src}");
    let (status, err) = app.post(&bare_path, &[], &other).await;
    assert_eq!(status, 401, "{src}: unsigned: {err}");

    // Stale and future timestamps.
    for skew in [-3600, 3600] {
        let at = unix_now() + skew;
        let (body, req) = match case.timestamp {
            Timestamp::None => continue,
            Timestamp::Header => {
                let b = body_for(&case, n + 2, None);
                let r = signed(&app, src, &b, at);
                (b, r)
            }
            Timestamp::Body => {
                let b = body_for(&case, n + 2, Some(at));
                let r = signed(&app, src, &b, unix_now());
                (b, r)
            }
        };
        let (status, err) = app.post(&req.path, &req.headers, &body).await;
        assert_eq!(status, 401, "{src}: timestamp off by {skew}s: {err}");
        assert_eq!(err["error"], "stale_timestamp", "{src}: {err}");
    }

    // Nothing refused reached the stream; the accepted one reaches the audit trail.
    assert_eq!(env.stream_len(src).await, 1);
    let cond = format!("id = '{id}' AND source = '{src}' AND status = 'queued'");
    env.await_events(&cond, 1, Duration::from_secs(10)).await;
}

fn rand_n() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 >> 16
}

macro_rules! kind_test {
    ($name:ident, $source:expr, $wrong:expr, $signs:expr, $ts:expr) => {
        #[actix_web::test]
        async fn $name() {
            check_kind(Case {
                source: $source,
                wrong_secret: $wrong,
                signs_body: $signs,
                timestamp: $ts,
            })
            .await;
        }
    };
}

kind_test!(
    chatwoot,
    "chatwoot",
    "not-the-secret",
    true,
    Timestamp::Header
);
kind_test!(pluggy, "pluggy", "not-the-secret", false, Timestamp::None);
kind_test!(c2s, "c2s", "not-the-secret", true, Timestamp::Body);
kind_test!(
    standard_webhooks,
    "standard-webhooks",
    "whsec_bm90LXRoZS1zZWNyZXQtYXQtYWxs",
    true,
    Timestamp::Header
);
kind_test!(github, "github", "not-the-secret", true, Timestamp::None);
kind_test!(
    stripe,
    "stripe",
    "whsec_not_the_secret",
    true,
    Timestamp::Header
);
kind_test!(shopify, "shopify", "not-the-secret", true, Timestamp::None);
kind_test!(slack, "slack", "not-the-secret", true, Timestamp::Header);
kind_test!(hmac, "hmac", "not-the-secret", true, Timestamp::None);
kind_test!(token, "token", "not-the-token", false, Timestamp::None);
kind_test!(
    path_token_on_top_of_github,
    "github-path",
    "not-the-secret",
    true,
    Timestamp::None
);

#[actix_web::test]
async fn rotated_secrets_are_all_accepted() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    for secret in ["cw-secret-old", "cw-secret"] {
        let mut source = app.source("chatwoot");
        source.secrets = vec![Secret::new(secret)];
        let body =
            json!({"event": "message_created", "id": rand_n(), "account": {"id": 1}}).to_string();
        let req = Signed::new(&source, body.as_bytes(), unix_now());
        let (status, answer) = app.post(&req.path, &req.headers, body.as_bytes()).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("queued")),
            "{secret}: {answer}"
        );
    }
}

#[actix_web::test]
async fn wrong_path_token_is_refused_before_the_signature() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let body = sample_body(rand_n());
    let req = signed(&app, "github-path", &body, unix_now());
    let (status, err) = app
        .post("/webhooks/github-path/wrong", &req.headers, &body)
        .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_token"))
    );
    // A source without a path token has no token URL.
    let (status, _) = app
        .post("/webhooks/github/anything", &req.headers, &body)
        .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn chatwoot_keys_follow_the_event_semantics() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let id = rand_n();
    // message_created with the same id is a duplicate even with another body (Chatwoot resends).
    let a = json!({"event": "message_created", "id": id, "account": {"id": 7}, "content": "hi"});
    let b =
        json!({"event": "message_created", "id": id, "account": {"id": 7}, "content": "hi again"});
    assert_eq!(
        app.post_signed("chatwoot", a.to_string().as_bytes())
            .await
            .1["status"],
        "queued"
    );
    assert_eq!(
        app.post_signed("chatwoot", b.to_string().as_bytes())
            .await
            .1["status"],
        "duplicate"
    );
    // conversation_updated legitimately repeats for one id: a new body is a new event.
    let c = json!({"event": "conversation_updated", "id": id, "status": "open"});
    let d = json!({"event": "conversation_updated", "id": id, "status": "resolved"});
    assert_eq!(
        app.post_signed("chatwoot", c.to_string().as_bytes())
            .await
            .1["status"],
        "queued"
    );
    assert_eq!(
        app.post_signed("chatwoot", d.to_string().as_bytes())
            .await
            .1["status"],
        "queued"
    );
    assert_eq!(
        app.post_signed("chatwoot", d.to_string().as_bytes())
            .await
            .1["status"],
        "duplicate"
    );
}

#[actix_web::test]
async fn c2s_envelopes_share_one_key() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let id = format!("lead-{}", rand_n());
    let attrs = json!({"updated_at": "2026-11-20T10:00:00Z", "customer": {"name": "Ana"}});
    let flat = json!({"id": id, "hook_action": "on_update_lead", "attributes": attrs});
    let data = json!({"hook_action": "on_update_lead", "data": {"type": "lead", "id": id, "attributes": attrs}});
    let lead = json!({"hook_action": "on_update_lead", "lead": {"id": id, "attributes": attrs}});
    assert_eq!(
        app.post_signed("c2s", flat.to_string().as_bytes()).await.1["status"],
        "queued"
    );
    assert_eq!(
        app.post_signed("c2s", data.to_string().as_bytes()).await.1["status"],
        "duplicate"
    );
    assert_eq!(
        app.post_signed("c2s", lead.to_string().as_bytes()).await.1["status"],
        "duplicate"
    );
    // A later update of the same lead is a new event.
    let newer = json!({"id": id, "hook_action": "on_update_lead", "attributes": {"updated_at": "2026-11-21T10:00:00Z"}});
    assert_eq!(
        app.post_signed("c2s", newer.to_string().as_bytes()).await.1["status"],
        "queued"
    );
    // An array of leads has no single key: the body hash keys it.
    let array = json!([{"id": id, "hook_action": "on_update_lead"}]);
    assert_eq!(
        app.post_signed("c2s", array.to_string().as_bytes()).await.1["status"],
        "queued"
    );
    assert_eq!(
        app.post_signed("c2s", array.to_string().as_bytes()).await.1["status"],
        "duplicate"
    );
}

#[actix_web::test]
async fn configured_idempotency_key_overrides_the_default() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    // source "hmac" keys on ["/data/n", "header:X-Tenant"].
    let n = rand_n();
    let one = json!({"data": {"n": n}, "text": "first"}).to_string();
    let two = json!({"data": {"n": n}, "text": "second"}).to_string();
    let send = |body: String, tenant: &'static str| {
        let app = &app;
        async move {
            let mut req = Signed::new(&app.source("hmac"), body.as_bytes(), unix_now());
            req.headers.push(("X-Tenant".into(), tenant.into()));
            app.post(&req.path, &req.headers, body.as_bytes()).await.1["status"].clone()
        }
    };
    assert_eq!(send(one.clone(), "a").await, "queued");
    assert_eq!(send(two.clone(), "a").await, "duplicate");
    assert_eq!(send(two, "b").await, "queued");
    let cond = format!("source = 'hmac' AND idempotency_key = '{n}:a'");
    env.await_events(&cond, 1, Duration::from_secs(10)).await;
}

#[actix_web::test]
async fn slack_url_verification_is_answered_not_queued() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let body = json!({"type": "url_verification", "challenge": "abc123", "token": "x"}).to_string();
    let (status, answer) = app.post_signed("slack", body.as_bytes()).await;
    assert_eq!(
        (status, answer["challenge"].as_str()),
        (200, Some("abc123"))
    );
    assert_eq!(env.stream_len("slack").await, 0);
}

#[actix_web::test]
async fn stored_headers_leave_out_secrets() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let body = sample_body(rand_n());
    let (_, answer) = app.post_signed("pluggy", &body).await;
    let id = answer["id"].as_str().expect("id").to_string();
    let cond =
        format!("id = '{id}' AND NOT headers ? 'x-webhook-secret' AND headers ? 'content-type'");
    env.await_events(&cond, 1, Duration::from_secs(10)).await;
    let mut r = env.redis().await;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(env.stream("pluggy"))
        .arg("-")
        .arg("+")
        .query_async(&mut r)
        .await
        .expect("XRANGE");
    let entry = &entries.ids[0];
    let hdr: String = entry.get("hdr").expect("hdr field");
    assert!(!hdr.contains("pluggy-secret"), "{hdr}");
    let stored: Vec<u8> = entry.get("body").expect("body field");
    assert_eq!(stored, body, "the stream keeps the raw body bytes");
}
