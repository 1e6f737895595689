//! Replicas as real processes: one killed with SIGKILL loses nothing, SIGTERM drains.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::future::join_all;
use hookgate::config::{ConfigOrigin, Settings};
use hookgate::send::{sample_body, unix_now};

use crate::helpers::{eventually, Signed, TestEnv};
use crate::sink::{Behaviour, Sink};

/// A gateway process.
pub(crate) struct Gateway {
    child: Child,
    pub(crate) port: u16,
    /// Every line it logged so far.
    pub(crate) log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    pub(crate) fn start(config: &std::path::Path, replica: &str) -> Gateway {
        Gateway::start_with_env(config, replica, &[])
    }

    /// As [`Gateway::start`], with these environment variables too.
    pub(crate) fn start_with_env(
        config: &std::path::Path,
        replica: &str,
        vars: &[(&str, String)],
    ) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("HOOKGATE_REPLICA_ID", replica)
            .env("RUST_LOG", "info")
            .env_remove("HOOKGATE_BIND")
            .env_remove("PORT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hookgate binary starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let name = replica.to_string();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let show = std::env::var("TEST_LOG").is_ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().unwrap_or(0));
                }
                if show {
                    eprintln!("[{name}] {line}");
                }
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the gateway reports its port");
        Gateway { child, port, log }
    }

    pub(crate) fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the configuration of replica processes: the test's Redis prefix, database and
/// spool, one server worker, these `[delivery]` settings and these sources.
pub(crate) fn process_config(
    env: &TestEnv,
    delivery: &str,
    sources: &str,
) -> (std::path::PathBuf, Settings) {
    let toml = format!(
        r#"
[server]
bind = "127.0.0.1:0"
workers = 1
{sections}[delivery]
{delivery}
{sources}
"#,
        sections = env.file_sections(),
    );
    let path = std::env::temp_dir().join(format!("{}.toml", env.prefix));
    std::fs::write(&path, &toml).expect("config written");
    let settings = Settings::from_toml(&toml, ConfigOrigin::Inline, &|_| None).expect("valid");
    (path, settings)
}

fn write_config(env: &TestEnv, sink: &Sink, destination: &str) -> (std::path::PathBuf, Settings) {
    process_config(
        env,
        "claim_margin_ms = 2000\npoll_interval_ms = 100\nshutdown_grace_seconds = 10\nconsumer_idle_seconds = 2",
        &format!(
            "[[sources]]\nname = \"orders\"\nkind = \"github\"\nsecrets = [\"s3cret\"]\n\
             [[sources.destinations]]\nname = \"app\"\nurl = \"{}\"\ntimeout_ms = 2000\nmax_in_flight = 8",
            sink.url(destination)
        ),
    )
}

/// Posts `n` events round-robin to the gateways; returns their ids.
async fn post(settings: &Settings, ports: &[u16], n: usize) -> Vec<String> {
    let source = settings.source("orders").expect("source").clone();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let mut ids = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let answers = join_all(chunk.iter().map(|i| {
            let body = sample_body(base + *i as u64);
            let req = Signed::new(&source, &body, unix_now());
            let url = format!("http://127.0.0.1:{}{}", ports[i % ports.len()], req.path);
            let client = &client;
            async move {
                let mut r = client
                    .post(url)
                    .insert_header(("content-type", "application/json"));
                for (k, v) in &req.headers {
                    r = r.insert_header((k.as_str(), v.as_str()));
                }
                let mut res = r.send_body(body).await.expect("posted");
                assert_eq!(res.status().as_u16(), 200);
                let answer: serde_json::Value = res.json().await.expect("json");
                answer["id"].as_str().expect("id").to_string()
            }
        }))
        .await;
        ids.extend(answers);
    }
    ids
}

#[actix_web::test]
async fn a_replica_killed_mid_delivery_loses_nothing() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/app", Behaviour::Hang(Duration::from_millis(200)));
    let (config, settings) = write_config(&env, &sink, "/app");
    let mut a = Gateway::start(&config, "replica-a");
    let b = Gateway::start(&config, "replica-b");
    let ids = post(&settings, &[a.port, b.port], 300).await;

    eventually(Duration::from_secs(30), "deliveries under way", || async {
        (sink.received("/app").len() >= 40).then_some(())
    })
    .await;
    a.child.kill().expect("SIGKILL");
    let _ = a.child.wait();

    sink.await_events(
        "/app",
        &ids,
        Duration::from_secs(90),
        "every event delivered by the survivor",
    )
    .await;
    let total = sink.received("/app").len();
    let redelivered = total - ids.len();
    println!(
        "takeover: {} events, {total} deliveries, {redelivered} redelivered (in flight at the kill), 0 lost",
        ids.len()
    );
    // Only what was in flight on the killed replica may arrive twice: at most its in-flight limit.
    assert!(redelivered <= 8, "{redelivered} redeliveries");
    // The dead replica's consumer is removed once it has nothing pending.
    eventually(
        Duration::from_secs(30),
        "the dead replica's consumer to be removed",
        || async {
            let mut r = env.redis().await;
            let info: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(env.stream("orders"))
                .arg("dest:app")
                .query_async(&mut r)
                .await
                .expect("XINFO");
            info.consumers
                .iter()
                .all(|c| c.name != "replica-a")
                .then_some(())
        },
    )
    .await;
    let _ = std::fs::remove_file(config);
    drop(b);
}

#[actix_web::test]
async fn sigterm_finishes_in_flight_and_leaves_the_rest_pending() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/app", Behaviour::Hang(Duration::from_millis(1500)));
    let (config, settings) = write_config(&env, &sink, "/app");
    let mut a = Gateway::start(&config, "replica-a");
    let ids = post(&settings, &[a.port], 40).await;
    eventually(
        Duration::from_secs(30),
        "the first deliveries in flight",
        || async { (!sink.received("/app").is_empty()).then_some(()) },
    )
    .await;
    a.signal("TERM");
    let status = a.child.wait().expect("exits");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let in_flight = sink.received("/app").len();
    assert!(in_flight > 0 && in_flight < 40, "{in_flight}");

    // Everything in flight was settled (acknowledged) before exit: the stream's pending list
    // holds nothing of the stopped replica, and the rest waits unread for the next one.
    let mut r = env.redis().await;
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(env.stream("orders"))
        .arg("dest:app")
        .query_async(&mut r)
        .await
        .expect("XPENDING");
    assert_eq!(pending.count(), 0, "nothing left pending unresolved");

    sink.set("/app", Behaviour::Ok);
    let _b = Gateway::start(&config, "replica-b");
    sink.await_events(
        "/app",
        &ids,
        Duration::from_secs(30),
        "the rest delivered by the next replica",
    )
    .await;
    assert_eq!(sink.received("/app").len(), 40, "no event delivered twice");
    let _ = std::fs::remove_file(config);
}
