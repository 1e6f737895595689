//! The shared circuit breaker of a destination, end to end: it opens, waits, probes and
//! closes; a reset on one replica is seen by another.

use std::time::{Duration, Instant};

use hookgate::circuit;
use hookgate::source::SourceKeys;

use crate::delivery::{dest, post_many, source};
use crate::helpers::{eventually, spawn_app, TestEnv};
use crate::sink::{Behaviour, Sink};

#[actix_web::test]
async fn circuit_opens_waits_probes_and_closes() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/breaker", Behaviour::Status(500));
    // One at a time, so nothing is in flight when the circuit opens.
    let d = dest("breaker", &sink.url("/breaker"), "max_in_flight = 1");
    let extra = "[sources.retry]\nmax_attempts = 100\nbase_delay_ms = 20\nmax_delay_ms = 50\n\
                 [sources.circuit]\nfailure_threshold = 3\nopen_seconds = 2";
    let app = spawn_app(env.settings(&source("orders", &[d], extra))).await;
    let sent = post_many(&app, "orders", 10).await;

    let keys = SourceKeys::new(&env.prefix, "orders").destination("breaker");
    let state = eventually(Duration::from_secs(30), "the circuit to open", || async {
        let mut r = env.redis().await;
        let s = circuit::read(&mut r, &keys.circuit).await.expect("state");
        (s.state == "open").then_some(s)
    })
    .await;
    let seen_at_open = sink.received("/breaker").len();
    assert_eq!(
        seen_at_open, 3,
        "exactly the threshold's attempts before opening"
    );
    // While open: no attempts at all (checked until shortly before it may half-open).
    let quiet_until = state.open_until_ms.saturating_sub(150);
    while circuit::now_ms() < quiet_until {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sink.received("/breaker").len(),
        seen_at_open,
        "attempts while the circuit was open"
    );

    // The destination recovers: the probe closes the circuit and everything waiting arrives.
    sink.set("/breaker", Behaviour::Ok);
    eventually(
        Duration::from_secs(30),
        "every event delivered after the probe",
        || async {
            let by = sink.by_event("/breaker");
            sent.iter()
                .all(|(id, _)| {
                    by.get(id).is_some_and(|v| {
                        v.last()
                            .is_some_and(|r| r.at.elapsed() < Duration::from_secs(60))
                    })
                })
                .then_some(())
        },
    )
    .await;
    env.await_events("status = 'delivered'", 10, Duration::from_secs(30))
        .await;
    let mut r = env.redis().await;
    assert_eq!(
        circuit::read(&mut r, &keys.circuit)
            .await
            .expect("state")
            .state,
        "closed"
    );
    // Waiting did not spend attempts: 3 failures in all before the probe.
    assert_eq!(env.count("delivery_attempts", "status_code = 500").await, 3);
}

#[actix_web::test]
async fn circuit_reset_on_one_replica_is_seen_by_another() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/reset", Behaviour::Status(500));
    let d = dest("reset", &sink.url("/reset"), "max_in_flight = 1");
    let extra = "[sources.retry]\nmax_attempts = 100\nbase_delay_ms = 20\nmax_delay_ms = 50\n\
                 [sources.circuit]\nfailure_threshold = 2\nopen_seconds = 600";
    let settings = env.settings(&source("orders", &[d], extra));
    // Replica A only ingests (and is where the operator resets); replica B delivers.
    let mut ingest_only = settings.clone();
    ingest_only.delivery.enabled = false;
    let a = spawn_app(ingest_only).await;
    let _b = spawn_app(settings).await;
    let mut sent = post_many(&a, "orders", 3).await;
    let keys = SourceKeys::new(&env.prefix, "orders").destination("reset");
    eventually(Duration::from_secs(30), "the circuit to open", || async {
        let mut r = env.redis().await;
        (circuit::read(&mut r, &keys.circuit)
            .await
            .expect("state")
            .state
            == "open")
            .then_some(())
    })
    .await;
    sink.set("/reset", Behaviour::Ok);
    sent.extend(post_many(&a, "orders", 3).await);

    let started = Instant::now();
    let mut r = env.redis().await;
    circuit::reset(
        &mut r,
        &keys.circuit,
        std::slice::from_ref(&keys.retry_schedule),
    )
    .await
    .expect("reset");
    eventually(
        Duration::from_secs(20),
        "deliveries after the reset",
        || async {
            let by = sink.by_event("/reset");
            sent.iter()
                .all(|(id, _)| {
                    by.get(id)
                        .is_some_and(|v| v.iter().any(|r| r.at >= started))
                })
                .then_some(())
        },
    )
    .await;
}
