//! The HTTP contract's refusals: each one a status code and a JSON error.

use bytes::Bytes;
use futures_util::stream;
use hookgate::send::unix_now;

use crate::helpers::{spawn_app, Signed, TestEnv, ALL_KINDS};

#[actix_web::test]
async fn unknown_source_is_404() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let (status, err) = app.post("/webhooks/nope", &[], b"{}").await;
    assert_eq!(status, 404);
    assert_eq!(err["error"], "unknown_source");
    let (status, err) = app.get("/no/such/route").await;
    assert_eq!((status, err["error"].as_str()), (404, Some("not_found")));
}

#[actix_web::test]
async fn oversize_body_is_413_by_declared_length() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let body = vec![b'x'; 1000];
    let req = Signed::new(&app.source("small"), &body, unix_now());
    let (status, err) = app.post(&req.path, &req.headers, &body).await;
    assert_eq!(status, 413);
    assert_eq!(err["error"], "payload_too_large");
    assert_eq!(env.stream_len("small").await, 0);
}

#[actix_web::test]
async fn oversize_chunked_body_is_413_without_reading_it_all() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let req = Signed::new(&app.source("small"), b"", unix_now());
    // No Content-Length: the limit must hold while streaming. The stream is far longer than
    // anyone would buffer, so an answer proves the gateway stopped reading early.
    let chunks = stream::iter(
        (0..100_000).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&[b'x'; 1024]))),
    );
    let client = awc::Client::default();
    let mut request = client.post(format!("{}{}", app.address, req.path));
    for (k, v) in &req.headers {
        request = request.insert_header((k.as_str(), v.as_str()));
    }
    match request.send_stream(chunks).await {
        Ok(mut res) => {
            assert_eq!(res.status().as_u16(), 413);
            let body: serde_json::Value = res.json().await.expect("JSON error");
            assert_eq!(body["error"], "payload_too_large");
        }
        // The server may close the connection after answering; the request was refused.
        Err(e) => assert!(
            e.to_string().to_lowercase().contains("connection") || e.to_string().contains("reset"),
            "{e}"
        ),
    }
    assert_eq!(env.stream_len("small").await, 0);
}

#[actix_web::test]
async fn non_json_body_for_json_kinds_is_400() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    for source in ["chatwoot", "pluggy", "c2s", "stripe"] {
        let body = b"this is not json";
        let req = Signed::new(&app.source(source), body, unix_now());
        let (status, err) = app.post(&req.path, &req.headers, body).await;
        assert_eq!(status, 400, "{source}: {err}");
        assert_eq!(err["error"], "invalid_json", "{source}");
        assert_eq!(env.stream_len(source).await, 0);
    }
    // Kinds that accept any body queue it, keyed by their header or the body hash.
    let body = b"payload=form-encoded";
    let req = Signed::new(&app.source("github"), body, unix_now());
    let (status, answer) = app.post(&req.path, &req.headers, body).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("queued")));
}

#[actix_web::test]
async fn unsigned_request_is_refused_even_when_json_is_bad() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    // The signature is checked first: an attacker learns nothing about parsing.
    let (status, err) = app.post("/webhooks/chatwoot", &[], b"not json").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("missing_signature"))
    );
}

#[actix_web::test]
async fn wrong_method_is_405_json() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let (status, err) = app.get("/webhooks/pluggy").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[actix_web::test]
async fn health_and_ready() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    let (status, body) = app.get("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = app.get("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redis"], "ok");
    assert_eq!(body["postgres"], "ok");
}

#[actix_web::test]
async fn a_header_of_too_many_signature_candidates_is_401_invalid_signature() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    // A real signature among 125 forged ones (about 8 KiB): refused as a whole, before the
    // body is MACed, so a forged header cannot cost thousands of HMACs.
    let body = format!(r#"{{"id":"evt_many","pad":"{}"}}"#, "x".repeat(1 << 19));
    let req = Signed::new(&app.source("stripe"), body.as_bytes(), unix_now());
    let forged: String = (0..125u8)
        .map(|i| format!(",v1={}", hex::encode([i; 32])))
        .collect();
    let with = |extra: &str| -> Vec<(String, String)> {
        let mut headers = req.headers.clone();
        for (name, value) in &mut headers {
            if name == "stripe-signature" {
                value.push_str(extra);
            }
        }
        headers
    };
    let headers = with(&forged);
    assert!(headers.iter().any(|(_, v)| v.len() > 8 * 1024));
    let (status, err) = app.post(&req.path, &headers, body.as_bytes()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_signature"))
    );
    assert_eq!(env.stream_len("stripe").await, 0);
    // The same signature among a few forged ones is accepted.
    let headers = with(&forged[..3 * 68]);
    let (status, answer) = app.post(&req.path, &headers, body.as_bytes()).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("queued")),
        "{answer}"
    );
}
