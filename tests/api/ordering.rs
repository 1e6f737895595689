//! Ordered delivery per key through real replica processes: every key's events reach the
//! destination in the order hookgate accepted them, with no gap, while the destination fails
//! a third of the requests at random and answers slowly; again with a SIGKILL mid-run.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use hookgate::config::Settings;
use hookgate::send::unix_now;

use crate::helpers::{eventually, Signed, TestEnv};
use crate::sink::{Behaviour, Sink};
use crate::takeover::{process_config, Gateway};

const KEYS: usize = 20;
const PER_KEY: usize = 50;

fn write_config(env: &TestEnv, sink: &Sink) -> (std::path::PathBuf, Settings) {
    process_config(
        env,
        "claim_margin_ms = 1000\npoll_interval_ms = 50\nconsumer_idle_seconds = 2",
        &format!(
            r#"
[[sources]]
name = "leads"
kind = "github"
secrets = ["s3cret"]
[sources.retry]
max_attempts = 30
base_delay_ms = 10
max_delay_ms = 200
[sources.circuit]
failure_threshold = 100000
[[sources.destinations]]
name = "crm"
url = "{}"
timeout_ms = 2000
max_in_flight = 16
ordering_key = "/lead"
"#,
            sink.url("/crm")
        ),
    )
}

/// A sink whose `/crm` answers after 20 ms, failing a third of the requests at random.
fn flaky_sink() -> Sink {
    let sink = Sink::start();
    sink.set(
        "/crm",
        Behaviour::Flaky {
            one_in: 3,
            delay: Duration::from_millis(20),
        },
    );
    sink
}

/// Posts every key's events in sequence (each after the previous one was accepted), the
/// keys side by side, alternating between the gateways; returns event id → (key, sequence).
async fn post_in_sequence(settings: &Settings, ports: &[u16]) -> HashMap<String, (usize, usize)> {
    let source = settings.source("leads").expect("source").clone();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let keys = (0..KEYS).map(|k| {
        let (source, client, run) = (&source, &client, &run);
        async move {
            let mut ids = Vec::with_capacity(PER_KEY);
            for seq in 0..PER_KEY {
                let body = serde_json::to_vec(&serde_json::json!({
                    "lead": format!("lead-{k}"), "seq": seq, "run": run
                }))
                .expect("json");
                let req = Signed::new(source, &body, unix_now());
                let port = ports[(k + seq) % ports.len()];
                let mut r = client
                    .post(format!("http://127.0.0.1:{port}{}", req.path))
                    .insert_header(("content-type", "application/json"))
                    .insert_header(("x-github-event", "lead"));
                for (name, value) in &req.headers {
                    r = r.insert_header((name.as_str(), value.as_str()));
                }
                let mut res = r.send_body(body).await.expect("posted");
                assert_eq!(res.status().as_u16(), 200);
                let answer: serde_json::Value = res.json().await.expect("json");
                ids.push((answer["id"].as_str().expect("id").to_string(), (k, seq)));
                // Paced, so that admission and delivery run while events keep arriving.
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
            }
            ids
        }
    });
    join_all(keys).await.into_iter().flatten().collect()
}

/// Checks every key's 2xx answers at the sink: in acceptance order, none missing; returns
/// how many were redeliveries (the same event again, right after itself).
fn assert_in_order(sink: &Sink, ids: &HashMap<String, (usize, usize)>) -> usize {
    let mut per_key: Vec<Vec<usize>> = vec![Vec::new(); KEYS];
    for o in sink.outcomes() {
        if o.path == "/crm" && (200..300).contains(&o.status) {
            let (k, seq) = ids[&o.webhook_id];
            per_key[k].push(seq);
        }
    }
    let mut repeats = 0;
    for (k, seqs) in per_key.iter().enumerate() {
        let mut expected = 0;
        for &seq in seqs {
            if seq + 1 == expected {
                repeats += 1; // delivered again (its settling was lost with a replica)
                continue;
            }
            assert_eq!(
                seq, expected,
                "lead-{k}: got event {seq} where {expected} was due; all: {seqs:?}"
            );
            expected += 1;
        }
        assert_eq!(expected, PER_KEY, "lead-{k}: {seqs:?}");
    }
    repeats
}

/// How many events are answered 2xx at the sink.
fn delivered(sink: &Sink) -> usize {
    sink.delivered("/crm").len()
}

#[actix_web::test]
async fn each_key_arrives_in_acceptance_order_through_two_replicas() {
    let env = TestEnv::new();
    let sink = flaky_sink();
    let (config, settings) = write_config(&env, &sink);
    let a = Gateway::start(&config, "replica-a");
    let b = Gateway::start(&config, "replica-b");
    let ids = post_in_sequence(&settings, &[a.port, b.port]).await;
    assert_eq!(ids.len(), KEYS * PER_KEY);
    eventually(
        Duration::from_secs(180),
        "every event delivered",
        || async { (delivered(&sink) == KEYS * PER_KEY).then_some(()) },
    )
    .await;
    let repeats = assert_in_order(&sink, &ids);
    let failures = sink
        .outcomes()
        .iter()
        .filter(|o| o.path == "/crm" && o.status == 500)
        .count();
    println!(
        "ordering: {KEYS} keys x {PER_KEY} events in order; {failures} failed attempts retried; {repeats} repeats"
    );
    assert!(failures > 0, "the destination failed some requests");
    assert_eq!(repeats, 0, "no replica died: nothing delivered twice");
    let _ = std::fs::remove_file(config);
}

#[actix_web::test]
async fn the_order_holds_when_the_replica_admitting_events_is_killed() {
    let env = TestEnv::new();
    let sink = flaky_sink();
    let (config, settings) = write_config(&env, &sink);
    let a = Gateway::start(&config, "replica-a");
    let b = Gateway::start(&config, "replica-b");
    // The replica holding the sequencer lease is killed (the harder case: admission moves),
    // while events keep arriving at the other one.
    let lease = format!("{}:{{leads}}:dest:crm:order:sequencer", env.prefix);
    let holder = eventually(Duration::from_secs(30), "a sequencer", || async {
        let mut redis = env.redis().await;
        redis::cmd("GET")
            .arg(&lease)
            .query_async::<Option<String>>(&mut redis)
            .await
            .expect("GET")
    })
    .await;
    let (victim, survivor) = if holder.starts_with("replica-a") {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let ports = [survivor.port];
    let posting = post_in_sequence(&settings, &ports);
    let killing = async {
        eventually(Duration::from_secs(60), "deliveries under way", || async {
            (delivered(&sink) >= 150).then_some(())
        })
        .await;
        victim.signal("KILL");
        delivered(&sink)
    };
    let (ids, at_kill) = futures_util::future::join(posting, killing).await;
    println!("ordering: killed the sequencer {holder} after {at_kill} deliveries, while posting");
    eventually(
        Duration::from_secs(180),
        "every event delivered",
        || async { (delivered(&sink) == ids.len()).then_some(()) },
    )
    .await;
    assert_eq!(ids.len(), KEYS * PER_KEY);
    let repeats = assert_in_order(&sink, &ids);
    println!("ordering with a SIGKILL: {KEYS} keys x {PER_KEY} events in order; {repeats} repeats (in flight at the kill)");
    let _ = std::fs::remove_file(config);
}
