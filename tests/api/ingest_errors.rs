//! The HTTP contract's refusals: each one a status code and a JSON error.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use hookgate::send::unix_now;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::helpers::{spawn_app, Signed, TestApp, TestEnv};
use crate::kinds::ALL_KINDS;

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

/// Sends `request` on a new TCP connection, then reads until the server closes it.
async fn raw(app: &TestApp, request: &[u8]) -> RawAnswer {
    let stream = connect(app).await;
    exchange(stream, request).await.1
}

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connects")
}

/// A status, lower-cased headers and body, read off the wire.
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Checks the JSON error shape: type, exact length, `error` code and a message.
    fn assert_json_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{:?}", self.headers);
        assert_eq!(self.header("content-type"), Some("application/json"));
        let length = self.body.len().to_string();
        assert_eq!(self.header("content-length"), Some(length.as_str()));
        let body: Value = serde_json::from_slice(&self.body).expect("JSON body");
        assert_eq!(body["error"], code, "{body}");
        assert!(
            !body["message"].as_str().unwrap_or_default().is_empty(),
            "{body}"
        );
    }
}

/// Writes `request`, then reads one answer (head and `content-length` body); the stream is
/// returned for more requests when the server keeps it open.
async fn exchange(mut stream: TcpStream, request: &[u8]) -> (TcpStream, RawAnswer) {
    // A guard against a server that never answers, not a timing assertion.
    let limit = Duration::from_secs(30);
    stream.write_all(request).await.expect("request sent");
    let mut read = Vec::new();
    let mut chunk = [0u8; 4096];
    let answer = loop {
        if let Some(answer) = parse(&read) {
            break answer;
        }
        let n = timeout(limit, stream.read(&mut chunk))
            .await
            .expect("the server answers")
            .expect("read");
        assert!(
            n > 0,
            "closed without a whole answer: {:?}",
            String::from_utf8_lossy(&read)
        );
        read.extend_from_slice(&chunk[..n]);
    };
    (stream, answer)
}

fn parse(read: &[u8]) -> Option<RawAnswer> {
    let end = read.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&read[..end]).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("length"));
    (read.len() >= end + length).then(|| RawAnswer {
        status,
        headers,
        body: read[end..end + length].to_vec(),
    })
}

fn head_with_headers(count: usize) -> Vec<u8> {
    let mut head = b"POST /webhooks/pluggy HTTP/1.1\r\nHost: hookgate\r\n".to_vec();
    for i in 0..count {
        head.extend_from_slice(format!("X-Filler-{i}: value-{i}\r\n").as_bytes());
    }
    head.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
    head
}

#[actix_web::test]
async fn too_many_headers_is_431_json() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    raw(&app, &head_with_headers(500))
        .await
        .assert_json_error(431, "headers_too_large");
    // A head over 128 KiB in a few headers is refused the same way.
    let mut head = b"GET /health HTTP/1.1\r\nHost: hookgate\r\n".to_vec();
    for i in 0..3 {
        head.extend_from_slice(format!("X-Big-{i}: {}\r\n", "v".repeat(50_000)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    raw(&app, &head)
        .await
        .assert_json_error(431, "headers_too_large");
    // The app still serves, and a head within the limits is not refused.
    let (status, body) = app.get("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let answer = raw(&app, &head_with_headers(80)).await;
    assert_eq!(
        answer.status,
        401,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    // Counted, as actix-http's own log line for each is turned off.
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"hookgate_http_refusals_total{status="431"}"#),
        "{metrics}"
    );
}

#[actix_web::test]
async fn malformed_request_is_400_json() {
    let env = TestEnv::new();
    let app = spawn_app(env.settings(ALL_KINDS)).await;
    raw(&app, b"THIS IS NOT HTTP\r\n\r\n")
        .await
        .assert_json_error(400, "bad_request");
    // HTTP/1.1 without Host is refused by the parser as well.
    raw(&app, b"GET /health HTTP/1.1\r\n\r\n")
        .await
        .assert_json_error(400, "bad_request");
    // On a connection that has served a request, the next malformed one is refused alike.
    let stream = connect(&app).await;
    let (stream, ok) = exchange(stream, b"GET /health HTTP/1.1\r\nHost: hookgate\r\n\r\n").await;
    assert_eq!(ok.status, 200);
    let (_, answer) = exchange(stream, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await;
    answer.assert_json_error(400, "bad_request");
    let (status, _) = app.get("/health").await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn stalled_head_is_408_json() {
    let env = TestEnv::new();
    let mut settings = env.settings(ALL_KINDS);
    // The shortest allowed: actix-http's clock ticks every 500 ms, so a head timeout is up to
    // 0.5 s early and a shorter one could refuse a request sent at once.
    settings.server.request_head_timeout_ms = 1000;
    let app = spawn_app(settings).await;
    // Half a head, then nothing: the server gives up on it after the head timeout.
    let answer = raw(
        &app,
        b"POST /webhooks/pluggy HTTP/1.1\r\nHost: hookgate\r\nX-Slow",
    )
    .await;
    answer.assert_json_error(408, "request_timeout");
    let body: Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1000 ms"),
        "{body}"
    );
    // A webhook sent in one go on the same app is queued.
    let (status, answer) = app
        .post_signed("pluggy", br#"{"eventId":"evt-408","itemId":"i"}"#)
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("queued")));
}
