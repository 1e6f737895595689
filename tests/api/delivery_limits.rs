//! Delivery within its limits: the process budget shared by priority, and a destination's
//! outbound rate limit.

use std::time::{Duration, Instant};

use crate::delivery::{dest, post_many, source};
use crate::helpers::{eventually, spawn_app, TestEnv};
use crate::sink::{Behaviour, Sink};

#[actix_web::test]
async fn a_busy_low_priority_source_leaves_room_for_a_high_priority_one() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/bulk", Behaviour::Hang(Duration::from_millis(500)));
    sink.set("/critical", Behaviour::Hang(Duration::from_millis(100)));
    let toml = [
        source(
            "bulk",
            &[dest("app", &sink.url("/bulk"), "max_in_flight = 100")],
            "priority = 0",
        ),
        source(
            "critical",
            &[dest("app", &sink.url("/critical"), "max_in_flight = 100")],
            "priority = 9",
        ),
    ]
    .join("\n");
    let mut settings = env.settings(&toml);
    // Budget 20: bulk may fill 20 * 1/10 = 2 of it, critical all 20.
    settings.delivery.max_in_flight = 20;
    let app = spawn_app(settings).await;
    let bulk = post_many(&app, "bulk", 60).await;
    let critical = post_many(&app, "critical", 60).await;
    eventually(Duration::from_secs(30), "critical deliveries", || async {
        (sink.distinct("/critical") == critical.len()).then_some(())
    })
    .await;
    let (b, c) = (
        sink.max_concurrent("/bulk"),
        sink.max_concurrent("/critical"),
    );
    println!("most in flight at once: bulk {b} (share 2), critical {c} (budget 20)");
    assert!(b <= 2, "bulk used {b} slots of its share of 2");
    assert!(c > 2 && c <= 20, "critical used {c} slots");
    eventually(
        Duration::from_secs(60),
        "bulk deliveries, slowly",
        || async { (sink.distinct("/bulk") == bulk.len()).then_some(()) },
    )
    .await;
}

#[actix_web::test]
async fn outbound_rate_limit_is_kept() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let d = dest(
        "limited",
        &sink.url("/limited"),
        "rate_limit_per_second = 20",
    );
    let app = spawn_app(env.settings(&source("orders", &[d], ""))).await;
    post_many(&app, "orders", 60).await;
    eventually(Duration::from_secs(30), "60 deliveries", || async {
        (sink.distinct("/limited") == 60).then_some(())
    })
    .await;
    // No sliding one-second window may hold more than the limit (plus one window edge).
    let mut at: Vec<Instant> = sink.received("/limited").iter().map(|r| r.at).collect();
    at.sort();
    let busiest = at
        .iter()
        .map(|t| {
            at.iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let spread = at[at.len() - 1] - at[0];
    println!("rate limit 20/s: 60 deliveries over {spread:?}, busiest second {busiest}");
    assert!(busiest <= 40, "{busiest} deliveries in one second");
    assert!(
        spread >= Duration::from_millis(1900),
        "60 deliveries at 20/s took only {spread:?}"
    );
}
