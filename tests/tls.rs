//! HTTPS at the front door: `CLUSTER_TLS=1 scripts/cluster.sh start 2`, the bundled Nginx with
//! a throwaway certificate made by openssl (as compose's Nginx with one mounted in nginx/certs).
//! Signed GitHub, Stripe and Shopify webhooks posted over HTTPS, half with HTTP/2 on TLS 1.3 and
//! half with HTTP/1.1 on TLS 1.2, must each be answered 200 and delivered once. Plain HTTP is
//! redirected to HTTPS but for /health, /ready and ACME challenges; TLS 1.1 is refused; Nginx's
//! own limits (body size, rate) are the same over HTTPS.
//!
//! Its own test binary, as the chaos test: it runs a cluster of its own.

#[path = "api/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[macro_use]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "api/sink.rs"]
mod sink;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::http::Version;
use hookgate::config::{ConfigOrigin, Settings, SourceConfig};
use hookgate::send::{sample_body, sign, unix_now};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

use cluster::{free_port_range, Cluster};
use helpers::{eventually, run, TestEnv};
use sink::Sink;

/// The senders that insist on an https:// URL.
const SOURCES: [&str; 3] = ["github", "stripe", "shopify"];
/// Webhooks posted over HTTPS: even ones over HTTP/2, odd ones over HTTP/1.1.
const WEBHOOKS: usize = 300;
/// Sending pace (webhooks/s), spread over this many client addresses (half of them HTTP/2,
/// half HTTP/1.1): 10/s each, far under Nginx's 100 r/s per address, so that even a sender
/// held up for seconds by a busy machine does not catch up in a burst Nginx refuses.
const RATE: f64 = 80.0;
const CLIENT_ADDRESSES: usize = 8;

fn secret(source: &str) -> String {
    match source {
        "stripe" => "whsec_stripe_tls_secret".into(),
        s => format!("{s}-tls-secret"),
    }
}

fn config(env: &TestEnv, sink: &Sink) -> String {
    let mut toml = format!(
        r#"
[server]
workers = 2
summary_interval_seconds = 3600
{sections}[delivery]
poll_interval_ms = 100
"#,
        sections = env.file_sections(),
    );
    for source in SOURCES {
        toml.push_str(&format!(
            r#"
[[sources]]
name = "{source}"
kind = "{source}"
secrets = ["{secret}"]
[[sources.destinations]]
name = "app"
url = "{url}"
"#,
            secret = secret(source),
            url = sink.url(&format!("/{source}")),
        ));
    }
    toml
}

/// A client that trusts only the cluster's throwaway CA, speaking `alpn` (h2 or http/1.1) on
/// TLS 1.3 (or 1.2 only), from a loopback address of its own.
fn https_client(ca: &Path, alpn: &[u8], tls12_only: bool, from: Ipv4Addr) -> awc::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the cluster's CA") {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let builder = if tls12_only {
        rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        rustls::ClientConfig::builder()
    };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    awc::Client::builder()
        .connector(
            awc::Connector::new()
                .rustls_0_23(Arc::new(config))
                .local_address(IpAddr::V4(from))
                .limit(200),
        )
        .disable_redirects()
        .timeout(Duration::from_secs(10))
        .finish()
}

/// What one webhook posted over HTTPS was answered.
struct Answer {
    status: u16,
    version: Version,
    word: String,
    id: String,
    request_id: String,
}

async fn post_signed(client: &awc::Client, base: &str, source: &SourceConfig, n: usize) -> Answer {
    let body = sample_body(n as u64);
    let signed = sign(source, &body, unix_now()).expect("signs");
    let mut req = client
        .post(format!("{base}{}", signed.path))
        .insert_header(("content-type", "application/json"));
    for (k, v) in &signed.headers {
        req = req.insert_header((k.as_str(), v.as_str()));
    }
    match req.send_body(body).await {
        Ok(mut res) => {
            let status = res.status().as_u16();
            let version = res.version();
            let request_id = header(&res, "x-request-id");
            let json: Value = res.json().await.unwrap_or(Value::Null);
            Answer {
                status,
                version,
                word: json["status"].as_str().unwrap_or("").into(),
                id: json["id"].as_str().unwrap_or("").into(),
                request_id,
            }
        }
        Err(e) => panic!("webhook {n} over HTTPS got no answer: {e}"),
    }
}

fn header<T>(res: &awc::ClientResponse<T>, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Nginx's access log, one JSON object per request.
fn access_log(cluster: &Cluster) -> Vec<Value> {
    std::fs::read_to_string(cluster.dir.join("nginx-access.log"))
        .expect("access log")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[actix_web::test]
async fn signed_webhooks_over_https_are_answered_and_delivered_and_plain_http_is_redirected() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let dir = std::env::temp_dir().join(format!("{}-tls-cluster", env.prefix));
    std::fs::create_dir_all(&dir).expect("cluster dir");
    let config_path = dir.join("hookgate.toml");
    let toml = config(&env, &sink);
    std::fs::write(&config_path, &toml).expect("config written");
    let settings =
        Settings::from_toml(&toml, ConfigOrigin::Inline, &|_| None).expect("valid config");
    // Nginx's HTTP port, the two replicas' after it, then Nginx's HTTPS port.
    let port = free_port_range(3);
    let https_port = port + 3;
    let cluster = Cluster {
        port,
        dir,
        config: config_path,
    };
    let mut start = cluster.script(&["start", "2"]);
    start
        .env("CLUSTER_TLS", "1")
        .env("CLUSTER_HTTPS_PORT", https_port.to_string());
    let out = run(start).await;
    assert!(
        out.ok,
        "cluster.sh start failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    println!("{}", out.stdout.trim_end());
    let https = format!("https://127.0.0.1:{https_port}");
    assert!(out.stdout.contains(&https), "{}", out.stdout);

    let ca = cluster.dir.join("nginx/ca.pem");
    // Even ones HTTP/2 on TLS 1.3, odd ones HTTP/1.1 on TLS 1.2 only.
    let clients: Vec<Rc<awc::Client>> = (0..CLIENT_ADDRESSES)
        .map(|i| {
            let from = Ipv4Addr::new(127, 0, 0, 10 + i as u8);
            Rc::new(if i % 2 == 0 {
                https_client(&ca, b"h2", false, from)
            } else {
                https_client(&ca, b"http/1.1", true, from)
            })
        })
        .collect();
    let h1 = clients[1].clone();
    let sources: Rc<Vec<SourceConfig>> = Rc::new(
        SOURCES
            .iter()
            .map(|s| settings.source(s).expect("configured").clone())
            .collect(),
    );

    // Every webhook once, at a steady pace, alternating HTTP/2 and HTTP/1.1.
    let started = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(WEBHOOKS);
    for n in 0..WEBHOOKS {
        actix_web::rt::time::sleep_until(started + Duration::from_secs_f64(n as f64 / RATE)).await;
        let client = clients[n % CLIENT_ADDRESSES].clone();
        let (sources, base) = (sources.clone(), https.clone());
        handles.push(actix_web::rt::spawn(async move {
            let source = &sources[n % SOURCES.len()];
            (n, post_signed(&client, &base, source, n).await)
        }));
    }
    let mut answers = Vec::with_capacity(WEBHOOKS);
    for h in handles {
        answers.push(h.await.expect("sender task"));
    }
    let send_seconds = started.elapsed().as_secs_f64();
    for (n, a) in &answers {
        let want = if n % 2 == 0 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        assert_eq!(
            (a.status, a.word.as_str(), a.version),
            (200, "queued", want),
            "webhook {n} over HTTPS (id {:?})",
            a.id
        );
        assert!(!a.id.is_empty() && !a.request_id.is_empty(), "webhook {n}");
    }

    // Each delivered, once, to its source's path.
    let expected: HashMap<String, &str> = answers
        .iter()
        .map(|(n, a)| (a.id.clone(), SOURCES[n % SOURCES.len()]))
        .collect();
    assert_eq!(
        expected.len(),
        WEBHOOKS,
        "every webhook has an event id of its own"
    );
    let delivered_by = |sink: &Sink| {
        let mut all: HashMap<String, (String, usize)> = HashMap::new();
        for source in SOURCES {
            for (id, times) in sink.delivered(&format!("/{source}")) {
                all.insert(id, (source.to_string(), times.len()));
            }
        }
        all
    };
    let delivered_at = Instant::now();
    eventually(
        Duration::from_secs(60),
        "every webhook posted over HTTPS delivered",
        || async {
            let delivered = delivered_by(&sink);
            expected
                .keys()
                .all(|id| delivered.contains_key(id))
                .then_some(())
        },
    )
    .await;
    let delivery_wait = delivered_at.elapsed().as_secs_f64();
    // Nothing more arrives: once the trail has every one delivered, each was settled
    // (acknowledged), so none can be delivered again.
    env.await_events(
        "status = 'delivered'",
        WEBHOOKS as i64,
        Duration::from_secs(60),
    )
    .await;
    let delivered = delivered_by(&sink);
    assert_eq!(
        delivered.len(),
        WEBHOOKS,
        "events delivered: none but those posted"
    );
    for (id, source) in &expected {
        assert_eq!(
            delivered.get(id),
            Some(&(source.to_string(), 1)),
            "event {id} delivered once to /{source}"
        );
    }

    // Nginx's view: every webhook came over HTTPS, in the protocol and TLS version sent.
    let log = access_log(&cluster);
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    for line in &log {
        let uri = line["uri"].as_str().unwrap_or("");
        if line["status"] == 200 && uri.starts_with("/webhooks/") {
            let key = |k: &str| line[k].as_str().unwrap_or("").to_string();
            *seen
                .entry((key("scheme"), key("protocol"), key("tls")))
                .or_default() += 1;
        }
    }
    let over = |proto: &str, tls: &str| {
        seen.get(&("https".to_string(), proto.to_string(), tls.to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        (
            over("HTTP/2.0", "TLSv1.3"),
            over("HTTP/1.1", "TLSv1.2"),
            seen.values().sum::<usize>()
        ),
        (WEBHOOKS / 2, WEBHOOKS / 2, WEBHOOKS),
        "webhooks in Nginx's access log by scheme, protocol and TLS version: {seen:?}"
    );

    // Plain HTTP: a webhook is redirected to the same URL over HTTPS, with its method kept
    // (308), and never reaches a replica; the health checks and ACME challenges are served.
    let plain = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(10))
        .finish();
    let github = &sources[0];
    let body = sample_body(1_000_000);
    let signed = sign(github, &body, unix_now()).expect("signs");
    let mut req = plain.post(cluster.url(&format!("{}?via=http", signed.path)));
    for (k, v) in &signed.headers {
        req = req.insert_header((k.as_str(), v.as_str()));
    }
    let res = req.send_body(body).await.expect("Nginx answers over HTTP");
    let redirect = (res.status().as_u16(), header(&res, "location"));
    assert_eq!(
        redirect,
        (308, format!("{https}{}?via=http", signed.path)),
        "a webhook over plain HTTP"
    );
    let mut plain_status = Vec::new();
    for path in ["/health", "/ready"] {
        let res = plain.get(cluster.url(path)).send().await.expect("answers");
        plain_status.push((path, res.status().as_u16()));
    }
    assert_eq!(
        plain_status,
        [("/health", 200), ("/ready", 200)],
        "health over plain HTTP"
    );
    let token = "tls-test-token-Zq3";
    let challenges = cluster.dir.join("nginx/acme/.well-known/acme-challenge");
    std::fs::create_dir_all(&challenges).expect("webroot");
    std::fs::write(
        challenges.join(token),
        "tls-test-token-Zq3.key-authorization",
    )
    .expect("challenge written");
    let mut res = plain
        .get(cluster.url(&format!("/.well-known/acme-challenge/{token}")))
        .send()
        .await
        .expect("answers");
    let challenge = (
        res.status().as_u16(),
        String::from_utf8_lossy(&res.body().await.expect("body")).into_owned(),
    );
    assert_eq!(
        challenge,
        (200, "tls-test-token-Zq3.key-authorization".to_string()),
        "an ACME HTTP-01 challenge over plain HTTP"
    );

    // Nginx's own limits are the same over HTTPS: a body over 1 MiB gets the JSON 413 (asked
    // over HTTP/1.1: Nginx ends an HTTP/2 stream whose body it did not read with RST_STREAM
    // NO_ERROR, which awc's HTTP/2 client takes as an error of the answer's body)...
    let mut res = h1
        .post(format!("{https}/webhooks/github"))
        .insert_header(("content-type", "application/json"))
        .send_body(vec![b' '; 1_100_000])
        .await
        .expect("Nginx answers");
    let too_large = (
        res.status().as_u16(),
        res.json::<Value>().await.unwrap_or(Value::Null)["error"].clone(),
    );
    assert_eq!(
        too_large,
        (413, Value::from("payload_too_large")),
        "a body over the limit"
    );
    // ... and a burst from one address the JSON 429, while /health keeps answering it.
    let burst_client = https_client(&ca, b"h2", false, Ipv4Addr::new(127, 0, 0, 201));
    let burst = futures_util::future::join_all((0..120).map(|_| {
        let req = burst_client
            .post(format!("{https}/webhooks/github"))
            .insert_header(("content-type", "application/json"));
        async move {
            match req.send_body("{}").await {
                Ok(mut res) => {
                    let status = res.status().as_u16();
                    let retry_after = res.headers().contains_key("retry-after");
                    let json: Value = res.json().await.unwrap_or(Value::Null);
                    (status, retry_after && json["error"] == "rate_limited")
                }
                Err(_) => (0, false),
            }
        }
    }));
    let health = futures_util::future::join_all((0..20).map(|_| {
        let req = burst_client.get(format!("{https}/health"));
        async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    }));
    let (burst, health) = futures_util::future::join(burst, health).await;
    let limited = burst.iter().filter(|(s, _)| *s == 429).count();
    let limited_json = burst.iter().filter(|(s, j)| *s == 429 && *j).count();
    let health_ok = health.iter().filter(|s| **s == 200).count();
    assert!(
        limited > 0 && limited_json == limited && health_ok == health.len(),
        "burst over HTTPS: {limited} of {} answered 429 ({limited_json} with JSON and Retry-After); /health {health_ok} of {} 200",
        burst.len(),
        health.len()
    );

    // TLS 1.1 is refused by Nginx itself (alert 70, protocol_version), 1.2 accepted.
    let s_client = |version: &str| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{https_port}"),
            version,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-CAfile",
        ])
        .arg(&ca)
        .stdin(std::process::Stdio::null());
        cmd
    };
    let tls11 = run(s_client("-tls1_1")).await;
    let tls12 = run(s_client("-tls1_2")).await;
    assert!(
        !tls11.ok && tls11.stderr.contains("alert number 70"),
        "TLS 1.1 not refused by the server:\n{}\n{}",
        tls11.stdout,
        tls11.stderr
    );
    assert!(
        tls12.ok && tls12.stdout.contains("Verify return code: 0 (ok)"),
        "TLS 1.2 with openssl:\n{}\n{}",
        tls12.stdout,
        tls12.stderr
    );

    figure!(
        "https webhooks    {WEBHOOKS} posted in {send_seconds:.1} s ({} HTTP/2 on TLS 1.3, {} HTTP/1.1 on TLS 1.2), {} answered 200 queued",
        over("HTTP/2.0", "TLSv1.3"),
        over("HTTP/1.1", "TLSv1.2"),
        answers.len()
    );
    figure!(
        "delivered         {} distinct events, each once ({delivery_wait:.1} s after the last answer)",
        delivered.len()
    );
    figure!(
        "plain HTTP        webhook {} to {}; /health and /ready 200; ACME challenge {}",
        redirect.0,
        redirect.1,
        challenge.0
    );
    figure!(
        "limits over HTTPS 413 for 1.1 MB; burst {limited} of {} answered 429 (JSON); /health {health_ok} of {} 200; TLS 1.1 refused",
        burst.len(),
        health.len()
    );
    cluster.run(&["stop"]).await;
}
