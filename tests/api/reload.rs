//! Reloading the configuration of a running replica process with SIGHUP: a destination added
//! gets events from then on while deliveries in flight finish; a file with a mistake is
//! refused, logged with its field, and the running configuration kept.

use std::collections::HashMap;
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

/// github sources of these names, each delivering to the sink path of its name.
fn named_sources(sink: &Sink, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "[[sources]]\nname = \"{n}\"\nkind = \"github\"\nsecrets = [\"s\"]\n\
                 [[sources.destinations]]\nname = \"d\"\nurl = \"{}\"\n",
                sink.url(&format!("/{n}"))
            )
        })
        .collect()
}

#[actix_web::test]
async fn a_reload_that_swaps_sources_loses_nothing_they_accepted_and_audits_the_new_one() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let mut redis = crate::redis_server::RedisServer::start();
    let redis_url = redis.url();
    // The file the replica reads, on its own Redis (stopped and started again below).
    let write = |names: &[&str]| {
        let (path, _) = process_config(&env, "poll_interval_ms = 50", &named_sources(&sink, names));
        let text = std::fs::read_to_string(&path).expect("config");
        let shared =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        std::fs::write(&path, text.replace(&shared, &redis_url)).expect("written");
        path
    };
    let path = write(&["a", "b"]);
    let settings = hookgate::config::Settings::load(Some(&path), &|_| None).expect("valid");
    let app = crate::helpers::spawn_app(settings).await;

    // Redis away: one webhook of each source waits in the replica's spool.
    redis.kill();
    let mut spooled = HashMap::new();
    for name in ["a", "b"] {
        let (status, answer) = app.post_signed(name, &sample_body(unix_now() as u64)).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("spooled")),
            "{answer}"
        );
        spooled.insert(name, answer["id"].as_str().expect("id").to_string());
    }
    // `a` removed, `c` added.
    write(&["b", "c"]);
    let (plan, generation) = app.reloader.reload().await.expect("reloaded");
    assert_eq!(
        (plan.added, plan.removed, generation),
        (vec!["c".to_string()], vec!["a".to_string()], 2)
    );
    assert_eq!(
        app.post_signed("a", b"{}").await.0,
        404,
        "a takes no webhook any more"
    );

    redis.restart();
    // b's webhook is delivered: the one of a, which this replica no longer has, does not jam
    // the spool ahead of it.
    sink.await_events(
        "/b",
        std::slice::from_ref(&spooled["b"]),
        Duration::from_secs(60),
        "b's spooled webhook delivered",
    )
    .await;
    let next = hookgate::config::Settings::load(Some(&path), &|_| None).expect("valid");
    let body = sample_body(unix_now() as u64 + 1);
    let req = Signed::new(next.source("c").expect("c"), &body, unix_now());
    let (status, answer) = app.post(&req.path, &req.headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    let c = answer["id"].as_str().expect("id").to_string();
    sink.await_events(
        "/c",
        std::slice::from_ref(&c),
        Duration::from_secs(30),
        "the new source delivered",
    )
    .await;
    // The new source is audited; a's webhook is in Redis (its stream waits for a source
    // named a to come back) and in the audit trail, not lost.
    let delivered = format!("'{}', '{c}'", spooled["b"]);
    env.await_events(
        &format!("id IN ({delivered}) AND status = 'delivered'"),
        2,
        Duration::from_secs(30),
    )
    .await;
    env.await_events(
        &format!("id = '{}' AND source = 'a'", spooled["a"]),
        1,
        Duration::from_secs(30),
    )
    .await;
    let _ = std::fs::remove_file(path);
}
