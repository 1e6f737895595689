//! Reloading the configuration of a running replica process with SIGHUP: a destination added
//! gets events from then on while deliveries in flight finish; a file with a mistake is
//! refused, logged with its field, and the running configuration kept.

use std::time::Duration;

use hookgate::send::{sample_body, unix_now};
use serde_json::Value;

use crate::helpers::{eventually, Signed, TestEnv};
use crate::sink::{Behaviour, Sink};
use crate::takeover::{process_config, Gateway};

const TOKEN: &str = "reload-admin-token";
const DELIVERY: &str = "claim_margin_ms = 2000\npoll_interval_ms = 50\nshutdown_grace_seconds = 10";

fn sources(sink: &Sink, with_crm: bool, kind: &str) -> String {
    let mut s = format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[[sources]]\nname = \"orders\"\nkind = \"{kind}\"\nsecrets = [\"s3cret\"]\n\
         [[sources.destinations]]\nname = \"app\"\nurl = \"{}\"\nmax_in_flight = 4\n",
        sink.url("/app")
    );
    if with_crm {
        s.push_str(&format!(
            "[[sources.destinations]]\nname = \"crm\"\nurl = \"{}\"\n",
            sink.url("/crm")
        ));
    }
    s
}

/// Posts `n` events to the gateway; returns their ids.
async fn post(gateway: &Gateway, settings: &hookgate::config::Settings, n: u64) -> Vec<String> {
    let source = settings.source("orders").expect("source").clone();
    let client = awc::Client::default();
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let mut ids = Vec::new();
    for i in 0..n {
        let body = sample_body(base + i);
        let req = Signed::new(&source, &body, unix_now());
        let mut r = client
            .post(format!("http://127.0.0.1:{}{}", gateway.port, req.path))
            .insert_header(("content-type", "application/json"));
        for (k, v) in &req.headers {
            r = r.insert_header((k.as_str(), v.as_str()));
        }
        let mut res = r.send_body(body).await.expect("posted");
        assert_eq!(res.status().as_u16(), 200);
        let answer: Value = res.json().await.expect("json");
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    ids
}

async fn generation(gateway: &Gateway) -> u64 {
    let mut res = awc::Client::default()
        .get(format!("http://127.0.0.1:{}/api/sources", gateway.port))
        .insert_header(("authorization", format!("Bearer {TOKEN}")))
        .send()
        .await
        .expect("asked");
    let body: Value = res.json().await.expect("json");
    body["config_generation"].as_u64().expect("a generation")
}

#[actix_web::test]
async fn sighup_adds_a_destination_without_dropping_deliveries_and_refuses_a_broken_file() {
    let env = TestEnv::new();
    let sink = Sink::start();
    // Slow enough that deliveries are in flight when the signal comes.
    sink.set("/app", Behaviour::Hang(Duration::from_millis(200)));
    let (path, settings) = process_config(&env, DELIVERY, &sources(&sink, false, "github"));
    let gateway = Gateway::start(&path, "replica-reload");
    assert_eq!(generation(&gateway).await, 1);
    let before = post(&gateway, &settings, 30).await;
    eventually(Duration::from_secs(30), "deliveries in flight", || async {
        (!sink.received("/app").is_empty()).then_some(())
    })
    .await;

    std::fs::write(
        &path,
        process_config_text(&path, &sources(&sink, true, "github")),
    )
    .expect("written");
    gateway.signal("HUP");
    eventually(Duration::from_secs(30), "generation 2", || async {
        (generation(&gateway).await == 2).then_some(())
    })
    .await;
    let after = post(&gateway, &settings, 20).await;
    let all: Vec<String> = before.iter().chain(&after).cloned().collect();
    sink.await_events("/app", &all, Duration::from_secs(60), "every event at app")
        .await;
    sink.await_events(
        "/crm",
        &after,
        Duration::from_secs(60),
        "the new destination gets the events after the reload",
    )
    .await;
    let at_app = sink.delivered("/app");
    let twice: Vec<(usize, usize)> = all
        .iter()
        .enumerate()
        .filter_map(|(i, id)| at_app.get(id).map(|t| (i, t.len())))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        twice.is_empty(),
        "every event delivered once to app: none dropped or cut off in flight; {twice:?}"
    );

    // A mistake: refused, logged with its field; generation 2 keeps running.
    std::fs::write(
        &path,
        process_config_text(&path, &sources(&sink, true, "nope")),
    )
    .expect("written");
    gateway.signal("HUP");
    eventually(Duration::from_secs(30), "the refusal logged", || async {
        let log = gateway.log.lock().expect("log").clone();
        log.iter()
            .find(|l| {
                l.contains("configuration reload refused") && l.contains("sources[0] (orders).kind")
            })
            .cloned()
    })
    .await;
    assert_eq!(generation(&gateway).await, 2);
    let last = post(&gateway, &settings, 1).await;
    sink.await_events(
        "/crm",
        &last,
        Duration::from_secs(30),
        "still delivering with generation 2",
    )
    .await;
    let _ = std::fs::remove_file(path);
}

/// The whole file `process_config` wrote at `path`, with other sources.
fn process_config_text(path: &std::path::Path, sources: &str) -> String {
    let text = std::fs::read_to_string(path).expect("the config");
    let head = text.split("[admin]").next().expect("a head").to_string();
    format!("{head}{sources}")
}
