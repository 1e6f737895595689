//! A load generator for the ingest path: pre-signs every request, then replays them over raw
//! keep-alive HTTP/1.1 connections so that the generator itself costs little CPU.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use hookgate::config::SourceConfig;
use hookgate::send::{sample_body, sign, unix_now};

/// The environment variable that gives every body a `"key"` field of this many distinct
/// values (`"k<i mod N>"`, for a destination's `ordering_key = "/key"`); unset, bodies have
/// no such field.
pub const KEYS_ENV: &str = "HOOKGATE_LOADGEN_KEYS";

/// How many distinct `"key"` values bodies carry ([`KEYS_ENV`]); None when unset.
pub fn keys_from_env() -> Result<Option<u64>, String> {
    match std::env::var(KEYS_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{KEYS_ENV}: {e}")),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("{KEYS_ENV}={v:?} must be a number of keys above 0")),
            Ok(n) => Ok(Some(n)),
        },
    }
}

/// `body` (a JSON object) with a `"key"` field first: `"k<i mod keys>"`, so that a key's
/// events are spread evenly over the run.
fn with_key(mut body: Vec<u8>, keys: Option<u64>, i: u64) -> Vec<u8> {
    if let Some(keys) = keys {
        body.splice(1..1, format!("\"key\":\"k{}\",", i % keys).into_bytes());
    }
    body
}

/// Figures of one load run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub sent: usize,
    pub ok: usize,
    pub non_2xx: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl LoadReport {
    /// Completed requests per second.
    pub fn per_second(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One human line.
    pub fn line(&self) -> String {
        format!(
            "{:.0} req/s, {} sent, {} 2xx, {} non-2xx, {} errors, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.per_second(),
            self.sent,
            self.ok,
            self.non_2xx,
            self.errors,
            self.p50_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0,
            self.max_us as f64 / 1000.0
        )
    }
}

/// Builds `count` signed raw requests for `source`; `duplicate_percent` of them repeat an
/// earlier request byte for byte (a sender's retry). Bodies carry a `"key"` when
/// [`KEYS_ENV`] says so.
pub fn signed_requests(
    source: &SourceConfig,
    host: &str,
    count: usize,
    duplicate_percent: u8,
) -> Result<Vec<Bytes>, String> {
    let now = unix_now();
    let keys = keys_from_env()?;
    // Ids unique across runs, so repeated benchmarks never hit earlier dedup keys.
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let mut out: Vec<Bytes> = Vec::with_capacity(count);
    for i in 0..count {
        // Deterministic spread of duplicates: every (100 / percent)-th request repeats one.
        let dup = duplicate_percent > 0
            && i > 0
            && (i * duplicate_percent as usize) % 100 < duplicate_percent as usize;
        if dup {
            let earlier = out[(i * 7919) % out.len()].clone();
            out.push(earlier);
            continue;
        }
        let body = with_key(sample_body(base + i as u64), keys, i as u64);
        let signed = sign(source, &body, now)?;
        out.push(raw_request(host, &signed.path, &signed.headers, &body));
    }
    Ok(out)
}

/// An HTTP/1.1 POST as bytes.
pub fn raw_request(host: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Bytes {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(k);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    Bytes::from(bytes)
}

/// Sends every request over `connections` keep-alive connections and reports the figures.
pub async fn run(addr: SocketAddr, requests: Arc<Vec<Bytes>>, connections: usize) -> LoadReport {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let requests = requests.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            connection(addr, requests, next).await
        }));
    }
    report(started, tasks).await
}

struct Part {
    hist: Histogram<u64>,
    ok: usize,
    non_2xx: usize,
    errors: usize,
}

/// One keep-alive connection that sends requests and records their answers.
struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: BytesMut,
    part: Part,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        Client {
            addr,
            stream: None,
            buf: BytesMut::with_capacity(8192),
            part: Part {
                hist: hookgate::telemetry::latency_histogram(),
                ok: 0,
                non_2xx: 0,
                errors: 0,
            },
        }
    }

    /// Sends one request (connecting first if needed) and records the answer and its latency.
    async fn exchange(&mut self, req: &[u8]) {
        let t = Instant::now();
        if self.stream.is_none() {
            match TcpStream::connect(self.addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    self.stream = Some(s);
                    self.buf.clear();
                }
                Err(_) => {
                    self.part.errors += 1;
                    return;
                }
            }
        }
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        let buf = &mut self.buf;
        let answer = async {
            s.write_all(req).await?;
            read_response(s, buf).await
        }
        .await;
        self.part
            .hist
            .saturating_record(t.elapsed().as_micros() as u64);
        match answer {
            Ok((status, close)) => {
                if (200..300).contains(&status) {
                    self.part.ok += 1;
                } else {
                    self.part.non_2xx += 1;
                }
                if close {
                    self.stream = None;
                }
            }
            Err(_) => {
                self.part.errors += 1;
                self.stream = None;
            }
        }
    }
}

/// Merges the connections' figures.
async fn report(started: Instant, tasks: Vec<tokio::task::JoinHandle<Part>>) -> LoadReport {
    let mut hist = hookgate::telemetry::latency_histogram();
    let (mut ok, mut non_2xx, mut errors) = (0, 0, 0);
    for t in tasks {
        if let Ok(part) = t.await {
            hist.add(&part.hist).ok();
            ok += part.ok;
            non_2xx += part.non_2xx;
            errors += part.errors;
        }
    }
    LoadReport {
        sent: ok + non_2xx + errors,
        ok,
        non_2xx,
        errors,
        elapsed: started.elapsed(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
    }
}

async fn connection(addr: SocketAddr, requests: Arc<Vec<Bytes>>, next: Arc<AtomicUsize>) -> Part {
    let mut client = Client::new(addr);
    while let Some(req) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
        client.exchange(req).await;
    }
    client.part
}

/// Reads one response; returns its status and whether the server closes the connection.
async fn read_response(s: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<(u16, bool)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if s.read_buf(buf).await? == 0 {
            return Err(bad("connection closed"));
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head is not text"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut length = 0usize;
    let mut close = false;
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| bad("content-length"))?;
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
    }
    while buf.len() < head_end + length {
        if s.read_buf(buf).await? == 0 {
            return Err(bad("connection closed in body"));
        }
    }
    buf.advance(head_end + length);
    Ok((status, close))
}

/// Sends webhooks at a fixed rate for `duration`, signing each at send time with the send
/// instant in its body (`sent_at_us`, unix µs), so a sink can measure ingest-to-delivery
/// latency. Bodies carry a `"key"` when [`KEYS_ENV`] says so. Returns how many were
/// accepted.
pub async fn run_rate(
    addr: SocketAddr,
    source: &SourceConfig,
    host: &str,
    rate: u32,
    duration: Duration,
    connections: usize,
) -> LoadReport {
    let keys = keys_from_env().unwrap_or_else(|e| {
        eprintln!("{e}: bodies carry no key");
        None
    });
    let per_conn = (rate as f64 / connections.max(1) as f64).max(0.001);
    let period = Duration::from_secs_f64(1.0 / per_conn);
    let started = Instant::now();
    let base = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..connections.max(1) {
        let source = source.clone();
        let host = host.to_string();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            // Spread the connections' ticks over one period.
            tokio::time::sleep(period.mul_f64(c as f64 / connections.max(1) as f64)).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while started.elapsed() < duration {
                tick.tick().await;
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                let n = base + i;
                let sent_at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or_default();
                let mut body = with_key(sample_body(n), keys, i);
                body.splice(1..1, format!("\"sent_at_us\":{sent_at},").into_bytes());
                let Ok(signed) = sign(&source, &body, unix_now()) else {
                    break;
                };
                client
                    .exchange(&raw_request(&host, &signed.path, &signed.headers, &body))
                    .await;
            }
            client.part
        }));
    }
    report(started, tasks).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_body_stays_json_and_cycles_through_its_keys() {
        let body = with_key(sample_body(7), Some(1000), 1234);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["key"], "k234");
        assert_eq!(v["eventId"], "evt-7");
        assert_eq!(with_key(sample_body(7), None, 1234), sample_body(7));
    }
}
