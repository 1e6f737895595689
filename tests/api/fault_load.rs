//! A steady signed load for fault tests: webhooks at a fixed rate spread over sources and
//! replicas, every answer recorded; then the check that every accepted one was delivered.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hookgate::config::SourceConfig;
use hookgate::send::{sample_body, unix_now};

use crate::helpers::{Signed, TestApp};
use crate::sink::Sink;

/// Webhooks per second.
pub const RATE_PER_SECOND: u64 = 300;

/// One webhook as the sender saw it.
pub struct Sent {
    pub source: String,
    pub status: u16,
    pub answer: String,
    pub id: String,
    pub latency: Duration,
    /// When it was sent, from the start of the load.
    pub at: Duration,
}

/// Sends `total` webhooks at [`RATE_PER_SECOND`], spread over the sources and alternating
/// between the replicas; `fault` runs on a thread of its own from the start.
pub async fn load(
    apps: &[Rc<TestApp>],
    sources: &[SourceConfig],
    total: u64,
    fault: impl FnOnce() + Send + 'static,
) -> Vec<Sent> {
    let faulty = std::thread::spawn(fault);
    let start = Instant::now();
    let sent: Rc<RefCell<Vec<Sent>>> = Rc::default();
    let mut tasks = Vec::new();
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let mut tick = actix_web::rt::time::interval(Duration::from_millis(10));
    let per_tick = RATE_PER_SECOND / 100;
    for n in 0..total {
        if n % per_tick == 0 {
            tick.tick().await;
        }
        let source = sources[n as usize % sources.len()].clone();
        let app = apps[(n as usize / sources.len()) % apps.len()].clone();
        let sent = sent.clone();
        tasks.push(actix_web::rt::spawn(async move {
            let body = sample_body(base + n);
            let req = Signed::new(&source, &body, unix_now());
            let began = Instant::now();
            let (status, answer) = app.post(&req.path, &req.headers, &body).await;
            sent.borrow_mut().push(Sent {
                source: source.name.clone(),
                status,
                answer: answer["status"].as_str().unwrap_or("").to_string(),
                id: answer["id"].as_str().unwrap_or("").to_string(),
                latency: began.elapsed(),
                at: began - start,
            });
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    faulty.join().expect("the fault thread");
    let all = std::mem::take(&mut *sent.borrow_mut());
    all
}

/// Checks the answers and waits for every accepted webhook at the sink; prints the figures.
pub async fn check_delivered(name: &str, sent: &[Sent], sink: &Sink, sources: &[SourceConfig]) {
    let refused: Vec<&Sent> = sent
        .iter()
        .filter(|s| !(200..300).contains(&s.status))
        .collect();
    let count = |what: &str| sent.iter().filter(|s| s.answer == what).count();
    let slowest = sent.iter().max_by_key(|s| s.latency);
    let (pause, pause_at) = slowest.map_or((Duration::ZERO, Duration::ZERO), |s| (s.latency, s.at));
    let mut latencies: Vec<Duration> = sent.iter().map(|s| s.latency).collect();
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    figure!(
        "{name}: {} sent, {} queued, {} spooled, {} duplicate, {} refused; ingest p99 {:.1} ms, \
         longest pause {:.0} ms (sent {:.1} s into the load, answered {})",
        sent.len(),
        count("queued"),
        count("spooled"),
        count("duplicate"),
        refused.len(),
        p99.as_secs_f64() * 1000.0,
        pause.as_secs_f64() * 1000.0,
        pause_at.as_secs_f64(),
        slowest.map_or("", |s| s.answer.as_str()),
    );
    assert!(
        refused.is_empty(),
        "{name}: {} answers were not 2xx, such as {} {}",
        refused.len(),
        refused[0].status,
        refused[0].answer
    );
    let mut redelivered = 0;
    for source in sources {
        let path = format!("/{}", source.name);
        let ids: Vec<String> = sent
            .iter()
            .filter(|s| s.source == source.name)
            .map(|s| s.id.clone())
            .collect();
        sink.await_events(
            &path,
            &ids,
            Duration::from_secs(120),
            &format!("every accepted webhook of {} delivered", source.name),
        )
        .await;
        let deliveries = sink.by_event(&path);
        redelivered += deliveries.values().map(|d| d.len() - 1).sum::<usize>();
        let strangers = deliveries.keys().filter(|k| !ids.contains(k)).count();
        assert_eq!(strangers, 0, "{name}: deliveries nobody sent");
    }
    figure!(
        "{name}: {} of {} delivered, lost 0, redelivered {redelivered}",
        sent.len(),
        sent.len()
    );
}
