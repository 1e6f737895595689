//! `/metrics` read with a Prometheus text parser, against a known workload.

use std::time::Duration;

use hookgate::send::sample_body;
use prometheus_parse::{Scrape, Value};

use crate::helpers::{eventually, spawn_app, TestApp, TestEnv};
use crate::sink::{Behaviour, Sink};

pub async fn scrape(app: &TestApp) -> Scrape {
    let (status, text) = app.get_text("/metrics").await;
    assert_eq!(status, 200);
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text")
}

/// The value of the sample `name` whose labels include all of `labels`.
pub fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            _ => None,
        })
}

#[actix_web::test]
async fn metrics_parse_and_match_a_known_workload() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/gone", Behaviour::Status(410));
    // Source names unique to this test: the recorder is shared by every app in the process.
    let toml = format!(
        r#"
[[sources]]
name = "metrics-ok"
kind = "github"
secrets = ["a"]
[[sources.destinations]]
name = "app"
url = "{ok}"

[[sources]]
name = "metrics-gone"
kind = "github"
secrets = ["b"]
[[sources.destinations]]
name = "crm"
url = "{gone}"
"#,
        ok = sink.url("/ok"),
        gone = sink.url("/gone")
    );
    let mut settings = env.settings(&toml);
    settings.server.metrics_interval_seconds = 1;
    let app = spawn_app(settings).await;
    for i in 0..4 {
        app.post_signed("metrics-ok", &sample_body(700 + i)).await;
    }
    let body = sample_body(800);
    let req = crate::helpers::Signed::new(
        &app.source("metrics-gone"),
        &body,
        hookgate::send::unix_now(),
    );
    app.post(&req.path, &req.headers, &body).await;
    app.post(&req.path, &req.headers, &body).await; // a duplicate
    app.post("/webhooks/metrics-ok", &[], b"{}").await; // unsigned

    let s = eventually(
        Duration::from_secs(30),
        "gauges of the settled workload",
        || async {
            let s = scrape(&app).await;
            let dead = value(
                &s,
                "hookgate_queue_dead",
                &[("source", "metrics-gone"), ("destination", "crm")],
            );
            // Two refreshes (one per worker thread) may publish at once: wait until the
            // scrape shows one of them whole.
            let letters = value(&s, "hookgate_dead_letters", &[("source", "metrics-gone")]);
            (dead == Some(1.0) && letters == Some(1.0)).then_some(s)
        },
    )
    .await;
    let ok = [("source", "metrics-ok")];
    assert_eq!(
        value(
            &s,
            "hookgate_ingest_requests_total",
            &[ok[0], ("outcome", "queued")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &s,
            "hookgate_ingest_requests_total",
            &[ok[0], ("outcome", "missing_signature")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "hookgate_dedup_hits_total",
            &[("source", "metrics-gone")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "hookgate_delivery_attempts_total",
            &[ok[0], ("destination", "app"), ("outcome", "delivered")]
        ),
        Some(4.0)
    );
    let app_labels = [ok[0], ("destination", "app")];
    assert_eq!(value(&s, "hookgate_queue_waiting", &app_labels), Some(0.0));
    assert_eq!(value(&s, "hookgate_queue_active", &app_labels), Some(0.0));
    assert_eq!(value(&s, "hookgate_queue_delayed", &app_labels), Some(0.0));
    assert_eq!(value(&s, "hookgate_circuit_state", &app_labels), Some(0.0));
    // Durable ingest: the Redis circuit is closed (other tests of this process may open
    // theirs for a moment, so only its presence is certain) and the spool is measured.
    assert!(value(&s, "hookgate_redis_circuit_state", &[]).is_some());
    assert!(value(&s, "hookgate_spool_events", &[]).is_some());
    assert_eq!(
        value(&s, "hookgate_dead_letters", &[("source", "metrics-gone")]),
        Some(1.0)
    );
    // Histograms come out as histograms, with buckets.
    let histogram = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "hookgate_ingest_duration_seconds"
                && x.labels.get("source") == Some("metrics-ok")
        })
        .expect("ingest latency histogram");
    assert!(
        matches!(histogram.value, Value::Histogram(ref b) if !b.is_empty()),
        "{:?}",
        histogram.value
    );
}
