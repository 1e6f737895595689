//! The admin API client behind `hookgate stats`, `hookgate events` and `hookgate replay`.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

/// A client of one gateway's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    client: awc::Client,
}

impl AdminClient {
    /// A client of the gateway at `base` (such as `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: &str) -> Self {
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    async fn call(
        &self,
        method: awc::http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let req = self
            .client
            .request(method, &url)
            .insert_header(("authorization", format!("Bearer {}", self.token)));
        let mut res = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        }
        .map_err(|e| anyhow!("{url}: {e}"))?;
        let bytes = res
            .body()
            .limit(16 << 20)
            .await
            .map_err(|e| anyhow!("{url}: {e}"))?;
        let value: Value =
            serde_json::from_slice(&bytes).with_context(|| format!("{url}: not JSON"))?;
        if res.status().is_success() {
            Ok(value)
        } else {
            Err(anyhow!(
                "{url}: {} {}",
                res.status().as_u16(),
                value["message"].as_str().unwrap_or("(no message)")
            ))
        }
    }

    /// GETs an admin path.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(awc::http::Method::GET, path, None).await
    }

    /// POSTs to an admin path.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.call(awc::http::Method::POST, path, body).await
    }
}

/// `hookgate stats`: one line per destination and the totals.
pub async fn stats(c: &AdminClient) -> anyhow::Result<String> {
    let body = c.get("/api/queue/stats").await?;
    let mut out = format!(
        "{:<24} {:<16} {:>9} {:>8} {:>11} {:>8} {:>8}\n",
        "source", "destination", "waiting", "active", "completed", "failed", "delayed"
    );
    let queues = body["data"]["queues"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    for (source, q) in &queues {
        for (dest, f) in q["destinations"].as_object().cloned().unwrap_or_default() {
            out.push_str(&format!(
                "{:<24} {:<16} {:>9} {:>8} {:>11} {:>8} {:>8}\n",
                source,
                dest,
                n(&f, "waiting"),
                n(&f, "active"),
                n(&f, "completed"),
                n(&f, "failed"),
                n(&f, "delayed")
            ));
        }
    }
    let s = &body["data"]["summary"];
    out.push_str(&format!(
        "{:<24} {:<16} {:>9} {:>8} {:>11} {:>8} {:>8}\n",
        "total",
        "",
        n(s, "totalWaiting"),
        n(s, "totalActive"),
        n(s, "totalCompleted"),
        n(s, "totalFailed"),
        n(s, "totalDelayed")
    ));
    Ok(out)
}

/// Filters shared by `events` and `replay`.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub source: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

impl EventFilter {
    fn query(&self) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("source", &self.source),
            ("status", &self.status),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = v {
                q.push(format!("{k}={}", urlencode(v)));
            }
        }
        q.join("&")
    }
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `hookgate events`: one line per event, newest first.
pub async fn events(c: &AdminClient, filter: &EventFilter, limit: u32) -> anyhow::Result<String> {
    let body = c
        .get(&format!("/api/events?{}&limit={limit}", filter.query()))
        .await?;
    let mut out = String::new();
    for e in body["events"].as_array().cloned().unwrap_or_default() {
        let text = |k: &str| e[k].as_str().unwrap_or("-").to_string();
        out.push_str(&format!(
            "{}  {}  {:<16} {:<9} attempts={:<2} {}{}\n",
            text("received_at"),
            text("id"),
            text("source"),
            text("status"),
            e["attempts"].as_i64().unwrap_or(0),
            text("event_type"),
            e["last_error"]
                .as_str()
                .map(|m| format!("  ({m})"))
                .unwrap_or_default()
        ));
    }
    if let Some(next) = body["next_cursor"].as_str() {
        out.push_str(&format!(
            "... more: GET /api/events?{}&cursor={next}\n",
            filter.query()
        ));
    }
    Ok(out)
}

/// `hookgate replay`: one event, or every event matching the filter with a progress bar; with
/// `new_id`, as new events with fresh ids.
pub async fn replay(
    c: &AdminClient,
    event: Option<&str>,
    filter: &EventFilter,
    destination: Option<&str>,
    all: bool,
    new_id: bool,
    progress: &mut dyn Write,
) -> anyhow::Result<String> {
    if let Some(id) = event {
        let mut query: Vec<String> = destination
            .map(|d| format!("destination={}", urlencode(d)))
            .into_iter()
            .collect();
        if new_id {
            query.push("new_id=true".into());
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let r = c
            .post(&format!("/api/events/{id}/replay{query}"), None)
            .await?;
        let to = r["destination"].as_str().unwrap_or("all");
        return Ok(match r["replay_of"].as_str() {
            Some(_) => format!(
                "event {id} queued again for {to} as new event {}\n",
                r["id"].as_str().unwrap_or("?")
            ),
            None => format!("event {id} queued again for {to}\n"),
        });
    }
    // Only the fields given: the server refuses a request that names no filter unless it
    // says `all`, so an empty filter never replays everything by accident.
    let mut body = serde_json::Map::new();
    for (k, v) in [
        ("source", &filter.source),
        ("status", &filter.status),
        ("since", &filter.since),
        ("until", &filter.until),
        ("destination", &destination.map(str::to_string)),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), Value::String(v.clone()));
        }
    }
    if all {
        body.insert("all".into(), Value::Bool(true));
    }
    if new_id {
        body.insert("new_id".into(), Value::Bool(true));
    }
    let body = Value::Object(body);
    let started = c.post("/api/events/replay", Some(&body)).await?;
    let id = started["replay_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no replay id in {started}"))?
        .to_string();
    loop {
        let p = c.get(&format!("/api/replays/{id}")).await?;
        let (done, total) = (
            p["done"].as_u64().unwrap_or(0),
            p["total"].as_u64().unwrap_or(0),
        );
        let width = 30usize;
        let filled = if total == 0 {
            width
        } else {
            (done as usize * width / total as usize).min(width)
        };
        let _ = write!(
            progress,
            "\rreplay {id} [{}{}] {done}/{total}",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        let _ = progress.flush();
        match p["state"].as_str() {
            Some("running") => actix_web::rt::time::sleep(Duration::from_millis(250)).await,
            Some("done") => {
                let _ = writeln!(progress);
                return Ok(format!(
                    "replay {id} done: {done} of {total} queued again, {} skipped\n",
                    p["skipped"].as_u64().unwrap_or(0)
                ));
            }
            other => {
                let _ = writeln!(progress);
                return Err(anyhow!(
                    "replay {id} {}: {}",
                    other.unwrap_or("?"),
                    p["error"].as_str().unwrap_or("")
                ));
            }
        }
    }
}
