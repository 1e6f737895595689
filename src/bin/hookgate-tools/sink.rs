//! A destination to deliver to in benchmarks and by hand: counts what it gets.

use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;

/// `hookgate-tools sink`: answers 200 (or NNN to paths ending in `/status/NNN`), counts
/// deliveries and, for bodies carrying `sent_at_us`, records ingest-to-delivery latency.
/// `GET /stats` reports, `POST /reset` starts over.
pub async fn bench_sink(bind: &str) -> anyhow::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    struct Stats {
        count: AtomicU64,
        latency: Mutex<Histogram<u64>>,
    }
    let stats = web::Data::new(Stats {
        count: AtomicU64::new(0),
        latency: Mutex::new(hookgate::telemetry::latency_histogram()),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(stats.clone())
            .route(
                "/stats",
                web::get().to(|s: web::Data<Stats>| async move {
                    let h = s
                        .latency
                        .lock()
                        .map(|h| h.clone())
                        .unwrap_or_else(|_| hookgate::telemetry::latency_histogram());
                    HttpResponse::Ok().json(serde_json::json!({
                        "count": s.count.load(Ordering::Relaxed),
                        "timed": h.len(),
                        "p50_us": h.value_at_quantile(0.5),
                        "p99_us": h.value_at_quantile(0.99),
                        "max_us": h.max(),
                    }))
                }),
            )
            .route(
                "/reset",
                web::post().to(|s: web::Data<Stats>| async move {
                    s.count.store(0, Ordering::Relaxed);
                    if let Ok(mut h) = s.latency.lock() {
                        h.reset();
                    }
                    HttpResponse::Ok().finish()
                }),
            )
            .default_service(web::to(
                |req: actix_web::HttpRequest, body: web::Bytes, s: web::Data<Stats>| async move {
                    // `.../status/NNN` answers NNN: a refusing destination for demos and tests.
                    if let Some(code) = req
                        .path()
                        .rsplit_once("/status/")
                        .and_then(|(_, c)| c.parse::<u16>().ok())
                        .and_then(|c| actix_web::http::StatusCode::from_u16(c).ok())
                    {
                        return HttpResponse::build(code)
                            .body(format!("answering {code} as asked"));
                    }
                    s.count.fetch_add(1, Ordering::Relaxed);
                    if let Some(sent) = sent_at_us(&body) {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_micros() as u64)
                            .unwrap_or_default();
                        if let Ok(mut h) = s.latency.lock() {
                            h.saturating_record(now.saturating_sub(sent));
                        }
                    }
                    HttpResponse::Ok().finish()
                },
            ))
    })
    .bind(bind)?
    .run()
    .await?;
    Ok(())
}

/// The `sent_at_us` number of a body, found without parsing the whole document.
fn sent_at_us(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"sent_at_us\":";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: String = body[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    digits.parse().ok()
}
