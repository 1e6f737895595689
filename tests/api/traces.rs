//! OpenTelemetry traces through a local OTLP collector stand-in (the test sink, taking
//! `POST /v1/traces`): each event's ingest, enqueue and delivery attempts arrive as spans of
//! one trace whose id is the event id.

use std::collections::HashMap;
use std::time::Duration;

use hookgate::send::{sample_body, unix_now};
use serde_json::Value;

use crate::helpers::{eventually, Signed, TestEnv};
use crate::sink::{Behaviour, Sink};
use crate::takeover::{process_config, Gateway};

/// Every span received so far: (trace id, name, parent span id, span id).
fn spans(collector: &Sink) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for r in collector.received("/v1/traces") {
        let body: Value = serde_json::from_slice(&r.body).expect("OTLP/JSON");
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_lowercase();
                    out.push((
                        text("traceId"),
                        text("name"),
                        text("parentSpanId"),
                        text("spanId"),
                    ));
                }
            }
        }
    }
    out
}

#[actix_web::test]
async fn each_event_is_one_trace_of_ingest_enqueue_and_its_attempts() {
    let env = TestEnv::new();
    let sink = Sink::start();
    // The first attempt of each event fails, so each has two attempt spans.
    sink.set("/app", Behaviour::FailFirst(1, 500));
    let collector = Sink::start();
    let (path, settings) = process_config(
        &env,
        "poll_interval_ms = 50",
        &format!(
            "[[sources]]\nname = \"orders\"\nkind = \"github\"\nsecrets = [\"s\"]\n\
             [sources.retry]\nbase_delay_ms = 20\nmax_delay_ms = 50\n\
             [[sources.destinations]]\nname = \"app\"\nurl = \"{}\"\n",
            sink.url("/app")
        ),
    );
    let gateway = Gateway::start_with_env(
        &path,
        "replica-traces",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url("")),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
        ],
    );
    let source = settings.source("orders").expect("source").clone();
    let client = awc::Client::default();
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = sample_body(unix_now() as u64 * 10 + i);
        let req = Signed::new(&source, &body, unix_now());
        let mut r = client.post(format!("http://127.0.0.1:{}{}", gateway.port, req.path));
        for (k, v) in &req.headers {
            r = r.insert_header((k.as_str(), v.as_str()));
        }
        let mut res = r.send_body(body).await.expect("posted");
        let answer: Value = res.json().await.expect("json");
        ids.push(answer["id"].as_str().expect("id").to_string());
    }
    let by_trace = eventually(Duration::from_secs(60), "every event's spans", || async {
        let mut by_trace: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
        for (trace, name, parent, span) in spans(&collector) {
            by_trace
                .entry(trace)
                .or_default()
                .push((name, parent, span));
        }
        let complete = ids.iter().all(|id| {
            let trace = id.replace('-', "");
            by_trace.get(&trace).is_some_and(|s| {
                let count = |n: &str| s.iter().filter(|(name, ..)| name == n).count();
                count("ingest") == 1 && count("enqueue") == 1 && count("delivery attempt") == 2
            })
        });
        complete.then_some(by_trace)
    })
    .await;
    for id in &ids {
        let spans = &by_trace[&id.replace('-', "")];
        let root = spans
            .iter()
            .find(|(name, ..)| name == "ingest")
            .expect("an ingest span");
        assert!(root.1.is_empty(), "the ingest span is the root: {spans:?}");
        for (name, parent, _) in spans.iter().filter(|(name, ..)| name != "ingest") {
            assert_eq!(
                parent, &root.2,
                "{name} is a child of the ingest span: {spans:?}"
            );
        }
    }
    println!(
        "traces: {} events, each one trace of ingest, enqueue and 2 attempts",
        ids.len()
    );
    let _ = std::fs::remove_file(path);
}
