//! The audit trail yields to ingest on a host whose CPUs are saturated, for `audit.yield_ms`
//! at most: threads spinning on every core make the kernel's CPU pressure high, the replica's
//! audit consumer waits (`hookgate_audit_yielding` 1), and then writes every row although the
//! host stays saturated.
//!
//! Its own test binary: it saturates the host's CPUs, and reads a process-wide gauge.

#[allow(dead_code)]
#[macro_use]
#[path = "api/helpers.rs"]
mod helpers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpers::{eventually, spawn_app, TestApp, TestEnv};

const CONFIG: &str = r#"
[[sources]]
name = "orders"
kind = "github"
secrets = ["orders-secret"]
"#;

/// Threads spinning until dropped: twice as many as the host has CPUs.
struct Spinners(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Spinners {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cpus * 2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        Spinners(stop, threads)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

async fn yielding(app: &TestApp) -> bool {
    let (_, text) = app.get_text("/metrics").await;
    text.lines()
        .any(|l| l.starts_with("hookgate_audit_yielding ") && l.ends_with(" 1"))
}

#[actix_web::test]
async fn on_a_saturated_host_the_trail_waits_then_catches_up() {
    if !std::path::Path::new("/proc/pressure/cpu").exists() {
        figure!("audit_yield: this kernel does not tell CPU pressure (PSI); nothing to test");
        return;
    }
    let env = TestEnv::new();
    let mut settings = env.settings(CONFIG);
    settings.audit.yield_ms = 2_000;
    let app = spawn_app(settings).await;
    for n in 0..5 {
        let (status, answer) = app
            .post_signed("orders", &hookgate::send::sample_body(n))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    env.await_events("true", 5, Duration::from_secs(60)).await;

    let spinners = Spinners::start();
    eventually(
        Duration::from_secs(30),
        "the audit consumer yielding",
        || async { yielding(&app).await.then_some(()) },
    )
    .await;
    let began = Instant::now();
    for n in 100..120 {
        let (status, answer) = app
            .post_signed("orders", &hookgate::send::sample_body(n))
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let right_after = env.count_events("true").await - 5;
    // Still saturated: the rows come once the longest wait is over.
    env.await_events("true", 25, Duration::from_secs(60)).await;
    figure!(
        "audit_yield: {right_after} of 20 rows written as the burst ended, all {:.1} s after it \
         began on a saturated host (yield_ms 2000)",
        began.elapsed().as_secs_f64()
    );
    drop(spinners);
}
