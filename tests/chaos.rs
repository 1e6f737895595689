//! Chaos: three replicas behind the bundled Nginx (`scripts/cluster.sh start 3`), 20,000
//! signed webhooks with 10 % duplicate keys, one replica SIGKILLed mid-run and started again,
//! the destination failing for 20 s, and a burst over the rate limit. Nothing accepted may be
//! lost; nothing may be delivered twice but what was in flight at the kill.
//!
//! Its own test binary, so that it runs alone: its figures are not disturbed by other tests.

#[path = "api/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[macro_use]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "api/sink.rs"]
mod sink;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use hookgate::config::{ConfigOrigin, Settings, SourceConfig};
use hookgate::send::{sample_body, sign, unix_now};
use serde_json::Value;

use cluster::{free_port_range, Cluster};
use helpers::{eventually, run, TestEnv};
use sink::{Behaviour, Sink};

/// Webhooks with a key of their own; each of the others repeats one of these keys.
const UNIQUE: usize = 18_000;
/// Keys sent twice at the same moment, and keys sent again a little later.
const PAIRS: usize = 1_000;
const LATE: usize = 1_000;
/// Sending pace (webhooks/s), spread over this many client addresses so that each stays
/// under Nginx's 100 r/s per address, as many senders would.
const RATE: f64 = 800.0;
const CLIENT_ADDRESSES: u8 = 16;
/// The destinations' delivery timeout: a delivery in flight at the kill began at most this
/// long before it.
const DELIVERY_TIMEOUT_MS: u64 = 5_000;
const SOURCES: [&str; 3] = ["chatwoot", "c2s", "pluggy"];
const ADMIN_TOKEN: &str = "chaos-admin-token";

fn config(env: &TestEnv, sink: &Sink) -> String {
    let mut toml = format!(
        r#"
[server]
workers = 2
summary_interval_seconds = 3600
{sections}[admin]
token = "{ADMIN_TOKEN}"
[delivery]
claim_margin_ms = 1000
poll_interval_ms = 100
consumer_idle_seconds = 5
shutdown_grace_seconds = 5
trim_interval_seconds = 2
"#,
        sections = env.file_sections(),
    );
    for source in SOURCES {
        toml.push_str(&format!(
            r#"
[[sources]]
name = "{source}"
kind = "{source}"
secrets = ["{source}-chaos-secret"]
[[sources.destinations]]
name = "app"
url = "{url}"
timeout_ms = {DELIVERY_TIMEOUT_MS}
[sources.retry]
max_attempts = 50
base_delay_ms = 200
max_delay_ms = 2000
[sources.circuit]
failure_threshold = 5
open_seconds = 2
"#,
            url = sink.url(&format!("/{source}")),
        ));
    }
    toml
}

/// One webhook to send: its key, and whether it repeats a key sent before or with it.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    First,
    Twin,
    Late,
}

/// What the sender saw for one webhook, across its retries.
struct Sent {
    key: usize,
    role: Role,
    /// The final answer: status word and event id (None: never a 2xx).
    answer: Option<(String, String)>,
    /// Nginx's request id of the request that got the final answer.
    request_id: String,
    /// Requests that did not get a 2xx and were sent again, by status (0: no answer).
    retried: Vec<u16>,
    /// Latency of the request that got a 2xx.
    latency: Duration,
}

struct Sender {
    clients: Vec<awc::Client>,
    sources: Vec<SourceConfig>,
    base_url: String,
    next_client: Cell<usize>,
}

impl Sender {
    fn new(settings: &Settings, base_url: String) -> Rc<Sender> {
        let clients = (0..CLIENT_ADDRESSES)
            .map(|i| {
                let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i));
                awc::Client::builder()
                    .connector(awc::Connector::new().local_address(local))
                    .timeout(Duration::from_secs(10))
                    .finish()
            })
            .collect();
        let sources = SOURCES
            .iter()
            .map(|s| settings.source(s).expect("configured").clone())
            .collect();
        Rc::new(Sender {
            clients,
            sources,
            base_url,
            next_client: Cell::new(0),
        })
    }

    /// Sends one webhook as a sender would: signed now, again after a pause on any failure.
    async fn send(self: Rc<Self>, key: usize, role: Role) -> Sent {
        let source = &self.sources[key % SOURCES.len()];
        let body = sample_body(key as u64);
        let mut retried = Vec::new();
        for attempt in 0..30u32 {
            let n = self.next_client.get();
            self.next_client.set(n + 1);
            let client = &self.clients[n % self.clients.len()];
            let signed = sign(source, &body, unix_now()).expect("signs");
            let mut req = client
                .post(format!("{}{}", self.base_url, signed.path))
                .insert_header(("content-type", "application/json"));
            for (k, v) in &signed.headers {
                req = req.insert_header((k.as_str(), v.as_str()));
            }
            let started = Instant::now();
            let status = match req.send_body(body.clone()).await {
                Ok(mut res) => {
                    let status = res.status().as_u16();
                    let request_id = res
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let json: Value = res.json().await.unwrap_or(Value::Null);
                    if status == 200 {
                        let word = json["status"].as_str().unwrap_or("").to_string();
                        let id = json["id"].as_str().unwrap_or("").to_string();
                        return Sent {
                            key,
                            role,
                            answer: Some((word, id)),
                            request_id,
                            retried,
                            latency: started.elapsed(),
                        };
                    }
                    status
                }
                Err(_) => 0,
            };
            retried.push(status);
            let pause = Duration::from_millis((250 * u64::from(attempt + 1)).min(2_000));
            actix_web::rt::time::sleep(pause).await;
        }
        Sent {
            key,
            role,
            answer: None,
            request_id: String::new(),
            retried,
            latency: Duration::ZERO,
        }
    }
}

/// The order of sending: slots go out at RATE; the webhooks of one slot at the same moment.
fn schedule() -> Vec<Vec<(usize, Role)>> {
    let every = UNIQUE / PAIRS;
    let mut slots: Vec<(f64, Vec<(usize, Role)>)> = Vec::new();
    for key in 0..UNIQUE {
        let mut slot = vec![(key, Role::First)];
        if key % every == 0 {
            slot.push((key, Role::Twin));
        }
        slots.push((key as f64, slot));
        if key % (UNIQUE / LATE) == every / 2 {
            // Again about half a second later, as a sender that did not see the answer.
            slots.push((key as f64 + 400.5, vec![(key, Role::Late)]));
        }
    }
    slots.sort_by(|a, b| a.0.total_cmp(&b.0));
    slots.into_iter().map(|(_, s)| s).collect()
}

/// Replica answering each request, by Nginx's request id (the last one tried).
fn upstreams_by_request(access_log: &std::path::Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(access_log).expect("access log");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let id = v["request_id"].as_str()?.to_string();
            let upstream = v["upstream"].as_str()?.rsplit(", ").next()?.to_string();
            Some((id, upstream))
        })
        .collect()
}

async fn admin_get(client: &awc::Client, url: &str) -> Value {
    match client
        .get(url)
        .insert_header(("authorization", format!("Bearer {ADMIN_TOKEN}")))
        .send()
        .await
    {
        Ok(mut res) if res.status().is_success() => {
            res.json().limit(1 << 22).await.unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

/// Ids of the audit rows whose status is not `delivered`.
async fn undelivered_rows(env: &TestEnv) -> Vec<String> {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let url = env.database_url.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).ok()?;
        diesel::sql_query("SELECT id::text AS id FROM webhook_events WHERE status <> 'delivered'")
            .load::<Row>(&mut conn)
            .ok()
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
    .into_iter()
    .map(|r| r.id)
    .collect()
}

/// An event's audit row, deliveries and attempts, in one line (for failure messages).
async fn audit_summary(env: &TestEnv, id: &str) -> String {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        line: String,
    }
    let url = env.database_url.clone();
    let q = format!(
        "SELECT e.status || ' attempts ' || e.attempts \
         || ' | deliveries ' || coalesce((SELECT string_agg(status || ':' || attempts || '@' || updated_at, ',') FROM deliveries WHERE event_id = e.id), '-') \
         || ' | attempts ' || coalesce((SELECT string_agg(attempt || ':' || coalesce(status_code, 0) || '@' || attempted_at, ',') FROM delivery_attempts WHERE event_id = e.id), '-') AS line \
         FROM webhook_events e WHERE e.id = '{id}'"
    );
    actix_web::rt::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).ok()?;
        diesel::sql_query(q).get_result::<Row>(&mut conn).ok()
    })
    .await
    .ok()
    .flatten()
    .map(|r| r.line)
    .unwrap_or_default()
}

/// Lines of the replicas' logs that contain `needle`.
fn cluster_log_count(cluster: &Cluster, needle: &str) -> usize {
    (1..=3)
        .map(|i| {
            std::fs::read_to_string(cluster.dir.join(format!("replica-{i}.log")))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(needle))
                .count()
        })
        .sum()
}

/// When each event was answered 2xx by the sink, over every source's path.
fn delivered(sink: &Sink) -> HashMap<String, Vec<Instant>> {
    let mut all = HashMap::new();
    for source in SOURCES {
        all.extend(sink.delivered(&format!("/{source}")));
    }
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[actix_web::test]
async fn three_replicas_behind_nginx_lose_nothing_under_chaos() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let dir = std::env::temp_dir().join(format!("{}-cluster", env.prefix));
    std::fs::create_dir_all(&dir).expect("cluster dir");
    let config_path = dir.join("hookgate.toml");
    let toml = config(&env, &sink);
    std::fs::write(&config_path, &toml).expect("config written");
    let settings =
        Settings::from_toml(&toml, ConfigOrigin::Inline, &|_| None).expect("valid config");
    let cluster = Cluster {
        port: free_port_range(3),
        dir,
        config: config_path,
    };
    println!("{}", cluster.run(&["start", "3"]).await.trim_end());

    let sender = Sender::new(&settings, cluster.url(""));
    let admin = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let slots = schedule();
    let total: usize = slots.iter().map(Vec::len).sum();
    assert_eq!(total, UNIQUE + PAIRS + LATE);

    // The run: the pace is fixed; the faults come at fixed points of it.
    let (kill_at, fail_at, restart_at) = (
        slots.len() * 30 / 100,
        slots.len() * 45 / 100,
        slots.len() * 60 / 100,
    );
    let mut kill_job = None;
    let mut restart_job = None;
    let mut circuit_watch = None;
    let mut handles = Vec::with_capacity(total);
    let start = tokio::time::Instant::now();
    for (n, slot) in slots.iter().enumerate() {
        actix_web::rt::time::sleep_until(start + Duration::from_secs_f64(n as f64 / RATE)).await;
        if n == kill_at {
            let cmd = cluster.script(&["kill", "2"]);
            kill_job = Some(actix_web::rt::spawn(async move {
                let before = Instant::now();
                let out = run(cmd).await;
                assert!(out.ok, "kill failed: {}", out.stderr);
                (before, Instant::now())
            }));
        }
        if n == fail_at {
            for source in SOURCES {
                sink.set(&format!("/{source}"), Behaviour::Status(503));
            }
            // Watches the circuits open (through Nginx, as an operator would).
            let url = cluster.url("/api/circuits");
            let client = admin.clone();
            circuit_watch = Some(actix_web::rt::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(19);
                let mut opened = HashSet::new();
                while Instant::now() < deadline && opened.len() < SOURCES.len() {
                    let v = admin_get(&client, &url).await;
                    for c in v["circuits"].as_array().into_iter().flatten() {
                        if c["state"] != "closed" {
                            opened.insert(c["source"].as_str().unwrap_or("").to_string());
                        }
                    }
                    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
                }
                opened.len()
            }));
        }
        if n == restart_at {
            let cmd = cluster.script(&["restart", "2"]);
            restart_job = Some(actix_web::rt::spawn(async move {
                let out = run(cmd).await;
                assert!(out.ok, "restart failed: {}\n{}", out.stdout, out.stderr);
            }));
        }
        for &(key, role) in slot {
            handles.push(actix_web::rt::spawn(sender.clone().send(key, role)));
        }
        if n == fail_at + 1 {
            // The destination fails for 20 s from the moment it was told to.
            let restore: Vec<String> = SOURCES.iter().map(|s| format!("/{s}")).collect();
            let state = sink.clone();
            actix_web::rt::spawn(async move {
                actix_web::rt::time::sleep(Duration::from_secs(20)).await;
                for path in restore {
                    state.set(&path, Behaviour::Ok);
                }
            });
        }
    }
    let send_seconds = start.elapsed().as_secs_f64();
    let mut sent = Vec::with_capacity(total);
    for h in handles {
        sent.push(h.await.expect("sender task"));
    }
    let (killed_from, killed_to) = kill_job
        .expect("a replica was killed")
        .await
        .expect("kill job");
    if let Some(job) = restart_job {
        job.await.expect("restart job");
    }
    let circuits_opened = match circuit_watch {
        Some(w) => w.await.expect("circuit watch"),
        None => 0,
    };

    // A burst over the rate limit from one client, while /health keeps answering it.
    let burst_client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 200)))
                .limit(400),
        )
        .timeout(Duration::from_secs(10))
        .finish();
    let burst = futures_util::future::join_all((0..300).map(|_| {
        let req = burst_client
            .post(cluster.url("/webhooks/chatwoot"))
            .insert_header(("content-type", "application/json"));
        async move {
            match req.send_body("{}").await {
                Ok(mut res) => {
                    let status = res.status().as_u16();
                    let retry_after = res.headers().contains_key("retry-after");
                    let json: Value = res.json().await.unwrap_or(Value::Null);
                    (status, retry_after, json)
                }
                Err(_) => (0, false, Value::Null),
            }
        }
    }));
    let health = futures_util::future::join_all((0..50).map(|_| {
        let req = burst_client.get(cluster.url("/health"));
        async move {
            match req.send().await {
                Ok(res) => res.status().as_u16(),
                Err(_) => 0,
            }
        }
    }));
    let (burst, health) = futures_util::future::join(burst, health).await;

    // Nginx's own refusals speak the gateway's JSON too: a body over the limit.
    let mut res = admin
        .post(cluster.url("/webhooks/chatwoot"))
        .insert_header(("content-type", "application/json"))
        .send_body(vec![b' '; 1_100_000])
        .await
        .expect("Nginx answers");
    let too_large = (
        res.status().as_u16(),
        res.headers().contains_key("x-request-id"),
        res.json::<Value>().await.unwrap_or(Value::Null),
    );

    // Everything accepted is delivered, and nothing is left in flight that could arrive again.
    let accepted: HashMap<usize, String> = sent
        .iter()
        .filter_map(|s| s.answer.as_ref().map(|(_, id)| (s.key, id.clone())))
        .collect();
    let ids: HashSet<String> = accepted.values().cloned().collect();
    eventually(
        Duration::from_secs(240),
        "every accepted webhook delivered",
        || async {
            let delivered = delivered(&sink);
            ids.iter()
                .all(|id| delivered.contains_key(id))
                .then_some(())
        },
    )
    .await;
    let stats_url = cluster.url("/api/queue/stats");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = admin_get(&admin, &stats_url).await;
        let s = &v["data"]["summary"];
        if s["totalWaiting"] == 0 && s["totalActive"] == 0 && s["totalDelayed"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queues not empty: {v}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let circuits = admin_get(&admin, &cluster.url("/api/circuits")).await;
    // The audit trail is whole: what the killed replica had read for it and not written
    // stays pending in Redis and is taken over, and every delivery is rolled up.
    let audit_wait = Instant::now();
    let in_flight_from = killed_from - Duration::from_millis(DELIVERY_TIMEOUT_MS + 500);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut left = Vec::new();
        for source in SOURCES {
            left.push(env.stream_len(source).await);
        }
        let rows = env.count_events("true").await;
        let stale = undelivered_rows(&env).await;
        if left.iter().all(|n| *n == 0) && rows == UNIQUE as i64 && stale.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let mut detail = String::new();
            let sink_times = delivered(&sink);
            for id in stale.iter().take(5) {
                let when: Vec<String> = sink
                    .outcomes()
                    .iter()
                    .filter(|o| &o.webhook_id == id)
                    .map(|o| {
                        format!(
                            "{}@{:.2}s",
                            o.status,
                            o.at.saturating_duration_since(killed_from).as_secs_f64()
                                - killed_from.saturating_duration_since(o.at).as_secs_f64()
                        )
                    })
                    .collect();
                detail.push_str(&format!(
                    "\n  {id}: {} | sink {when:?} ({} ok)",
                    audit_summary(&env, id).await,
                    sink_times.get(id).map(Vec::len).unwrap_or(0)
                ));
            }
            panic!(
                "audit: {rows} rows of {UNIQUE}, {} not delivered; stream entries left {left:?}{detail}",
                stale.len(),
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    // One attempt row per attempt Redis settled: exactly one success per event (a delivery
    // the killed replica made and never settled was made again, and only that one counts),
    // and no attempt written twice.
    let successes = env.count("delivery_attempts", "status_code = 200").await;
    let doubled = env
        .count(
            "(SELECT 1 FROM delivery_attempts GROUP BY event_id, destination, attempt HAVING count(*) > 1) d",
            "true",
        )
        .await;
    let attempt_rows = env.count("delivery_attempts", "true").await;
    let taken_over = cluster_log_count(&cluster, "another replica left unwritten");
    let audit_rows = env.count_events("true").await;
    let upstreams = upstreams_by_request(&cluster.dir.join("nginx-access.log"));

    // Figures.
    let ok_at = delivered(&sink);
    let failed_by_sink = sink.outcomes().iter().filter(|o| o.status == 503).count();
    let lost: Vec<&String> = ids.iter().filter(|id| !ok_at.contains_key(*id)).collect();
    let strangers: Vec<&String> = ok_at.keys().filter(|id| !ids.contains(*id)).collect();
    let redelivered: Vec<(&str, &Vec<Instant>)> = ok_at
        .iter()
        .filter(|(_, at)| at.len() > 1)
        .map(|(id, at)| (id.as_str(), at))
        .collect();
    let not_in_flight: Vec<&str> = redelivered
        .iter()
        .filter(|(_, at)| {
            let first = at.iter().min().expect("deliveries");
            at.len() > 2 || *first < in_flight_from || *first > killed_to
        })
        .map(|(id, _)| *id)
        .collect();

    let mut by_key: HashMap<usize, Vec<&Sent>> = HashMap::new();
    for s in &sent {
        by_key.entry(s.key).or_default().push(s);
    }
    let never_accepted = sent.iter().filter(|s| s.answer.is_none()).count();
    let queued = sent
        .iter()
        .filter(|s| matches!(&s.answer, Some((w, _)) if w == "queued"))
        .count();
    let duplicates = sent
        .iter()
        .filter(|s| matches!(&s.answer, Some((w, _)) if w == "duplicate"))
        .count();
    let mut twice_queued = Vec::new();
    // Enqueued by the replica that was killed before it answered: Nginx sent the request to
    // another replica, which answered `duplicate` with the same id.
    let mut never_queued = 0;
    let mut split_ids = Vec::new();
    let mut repeats_not_duplicate = 0;
    let (mut pairs_split, mut pairs_seen) = (0, 0);
    for (key, group) in &by_key {
        let answers: Vec<&(String, String)> =
            group.iter().filter_map(|s| s.answer.as_ref()).collect();
        match answers.iter().filter(|(w, _)| w == "queued").count() {
            0 => never_queued += 1,
            1 => {}
            _ => twice_queued.push(*key),
        }
        if answers
            .iter()
            .map(|(_, id)| id)
            .collect::<HashSet<_>>()
            .len()
            > 1
        {
            split_ids.push(*key);
        }
        let dup_answers = answers.iter().filter(|(w, _)| w == "duplicate").count();
        if dup_answers + 1 < group.len() {
            repeats_not_duplicate += 1;
        }
        if group.iter().any(|s| s.role == Role::Twin) && group.len() == 2 {
            let replicas: HashSet<Option<&String>> =
                group.iter().map(|s| upstreams.get(&s.request_id)).collect();
            if replicas.iter().all(Option::is_some) {
                pairs_seen += 1;
                if replicas.len() == 2 {
                    pairs_split += 1;
                }
            }
        }
    }
    let retried: Vec<u16> = sent.iter().flat_map(|s| s.retried.clone()).collect();
    let retried_by_status = retried
        .iter()
        .fold(HashMap::<u16, usize>::new(), |mut m, s| {
            *m.entry(*s).or_default() += 1;
            m
        });
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter(|s| s.answer.is_some())
        .map(|s| s.latency)
        .collect();
    latencies.sort_unstable();
    let limited = burst.iter().filter(|(s, _, _)| *s == 429).count();
    let limited_well_formed = burst
        .iter()
        .filter(|(s, retry_after, json)| {
            *s == 429 && *retry_after && json["error"] == "rate_limited"
        })
        .count();
    let health_ok = health.iter().filter(|s| **s == 200).count();

    figure!("chaos figures (3 replicas behind Nginx; replica 2 SIGKILLed and restarted; destination failing 20 s):");
    figure!("  sent                 {total} webhooks ({UNIQUE} keys; {PAIRS} sent twice at once, {LATE} again later) in {send_seconds:.1} s");
    figure!(
        "  accepted             {} (2xx), never accepted {never_accepted}",
        sent.len() - never_accepted
    );
    figure!("  answered queued      {queued} ({never_queued} first sends answered duplicate: enqueued by the killed replica, retried by Nginx on another)");
    figure!("  answered duplicate   {duplicates} (of {} repeats; simultaneous pairs on different replicas: {pairs_split} of {pairs_seen})", PAIRS + LATE);
    figure!(
        "  sender retries       {} {:?} (status 0: no answer)",
        retried.len(),
        retried_by_status
    );
    figure!("  delivered            {} distinct events ({} deliveries answered 200, {failed_by_sink} answered 503 while failing)", ok_at.len(), ok_at.values().map(Vec::len).sum::<usize>());
    figure!(
        "  redelivered          {} (in flight at the kill)",
        redelivered.len()
    );
    figure!("  lost                 {}", lost.len());
    figure!(
        "  circuits opened      {circuits_opened} of {}",
        SOURCES.len()
    );
    figure!(
        "  audit rows           {audit_rows} of {} events, all delivered, {:.1} s after the queues emptied; {attempt_rows} attempt rows for {} requests the sink answered, {successes} successes, {doubled} doubled; {taken_over} take-overs of the killed replica's audit entries",
        ids.len(),
        audit_wait.elapsed().as_secs_f64(),
        sink.outcomes().len()
    );
    figure!(
        "  ingest latency       p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (through Nginx)",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    figure!("  rate-limit burst     {limited} of {} answered 429 ({limited_well_formed} with JSON and Retry-After); /health {health_ok} of {} 200", burst.len(), health.len());

    assert_eq!(never_accepted, 0, "webhooks never accepted");
    assert!(
        lost.is_empty(),
        "{} accepted webhooks never delivered: {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        strangers.is_empty(),
        "deliveries of events nobody was told about: {strangers:?}"
    );
    assert_eq!(ids.len(), UNIQUE, "one event per key");
    assert_eq!(audit_rows, UNIQUE as i64, "one audit row per event");
    assert_eq!(
        successes, UNIQUE as i64,
        "one successful attempt row per event"
    );
    assert_eq!(doubled, 0, "attempts written twice");
    assert!(
        twice_queued.is_empty(),
        "keys enqueued twice: {twice_queued:?}"
    );
    assert_eq!(
        queued + never_queued,
        UNIQUE,
        "one queued answer per key (none when Nginx retried it after the kill)"
    );
    assert!(
        split_ids.is_empty(),
        "keys answered with different ids: {split_ids:?}"
    );
    assert_eq!(
        repeats_not_duplicate, 0,
        "repeated keys not answered duplicate"
    );
    assert!(
        pairs_split > 0,
        "no simultaneous pair went through two replicas"
    );
    assert!(
        not_in_flight.is_empty(),
        "delivered twice without being in flight at the kill: {not_in_flight:?}"
    );
    assert_eq!(
        circuits_opened,
        SOURCES.len(),
        "every circuit opened while the destination failed"
    );
    let closed = circuits["circuits"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|c| c["state"] == "closed");
    assert!(closed, "circuits closed again: {circuits}");
    assert!(
        limited > 0 && limited == limited_well_formed,
        "429s with the JSON body: {limited} / {limited_well_formed}"
    );
    assert_eq!(
        health_ok,
        health.len(),
        "/health answered 200 throughout the burst"
    );
    assert_eq!(
        (too_large.0, too_large.1, &too_large.2["error"]),
        (413, true, &Value::from("payload_too_large")),
        "a body over Nginx's limit: {too_large:?}"
    );
}
