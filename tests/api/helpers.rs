//! Test harness: every test gets its own Redis key prefix and its own PostgreSQL database,
//! both removed when the test ends, so tests run in parallel and leave nothing behind.

/// Prints a line of figures on stderr directly: the test harness would hold back `println!`
/// of a passing test, and the figures are wanted in every run (CI's included).
#[allow(unused_macros)]
macro_rules! figure {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::future::Future;
use std::sync::Once;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use diesel::prelude::*;
use diesel::sql_query;
use hookgate::config::{ConfigOrigin, RedisTopology, Settings, SourceConfig};
use hookgate::send::{sign, unix_now};
use hookgate::source::SourceKeys;
use hookgate::startup::Application;
use serde_json::Value;

static INIT: Once = Once::new();

fn init() {
    INIT.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var("TEST_LOG").is_ok() {
            hookgate::telemetry::init_logging();
        }
    });
}

pub fn redis_base() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn postgres_base() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// One test's private Redis prefix and database; both are deleted on drop.
pub struct TestEnv {
    pub prefix: String,
    pub database_url: String,
    /// This test's spool folder (replicas' folders go below it).
    pub spool_dir: std::path::PathBuf,
    db_name: String,
}

impl TestEnv {
    /// A fresh prefix and database name (the gateway creates the database).
    pub fn new() -> Self {
        init();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("hookgate_test_{id}");
        TestEnv {
            spool_dir: std::env::temp_dir().join(format!("hookgate-spool-{id}")),
            prefix: format!("hgtest-{id}"),
            database_url: format!("{}/{db_name}", postgres_base()),
            db_name,
        }
    }

    /// Settings from a TOML document, pointed at this environment.
    pub fn settings(&self, toml: &str) -> Settings {
        let mut s = Settings::from_toml(toml, ConfigOrigin::Inline, &|_| None)
            .expect("test config is valid");
        s.server.bind = "127.0.0.1:0".into();
        s.server.workers = Some(2);
        s.redis.topology = RedisTopology::Single(redis_base());
        s.redis.key_prefix = self.prefix.clone();
        s.database.url = self.database_url.clone();
        s.spool.dir = self.spool_dir.clone();
        s.audit.flush_interval_ms = 20;
        // The trails of in-process gateways never wait for a busy host (the suite keeps this
        // one busy, and tests that time the trail would measure the wait); gateways started
        // from files keep the default. `tests/audit_yield.rs` tests the wait.
        s.audit.yield_ms = 0;
        s
    }

    /// The `[redis]`, `[database]` and `[spool]` sections of a configuration file for gateway
    /// processes of this test (its Redis prefix, database and spool).
    pub fn file_sections(&self) -> String {
        format!(
            "[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n[database]\nurl = \"{}\"\n[spool]\ndir = \"{}\"\n",
            redis_base(),
            self.prefix,
            self.database_url,
            self.spool_dir.display()
        )
    }

    /// The stream key of a source.
    pub fn stream(&self, source: &str) -> String {
        SourceKeys::new(&self.prefix, source).stream
    }

    /// A Redis connection for assertions.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_base())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("test Redis is reachable")
    }

    /// Entries in a source's stream.
    pub async fn stream_len(&self, source: &str) -> usize {
        let mut r = self.redis().await;
        redis::cmd("XLEN")
            .arg(self.stream(source))
            .query_async(&mut r)
            .await
            .expect("XLEN")
    }

    /// Rows of `webhook_events` matching a SQL condition.
    pub async fn count_events(&self, condition: &str) -> i64 {
        self.count("webhook_events", condition).await
    }

    /// Waits until exactly `n` rows of `webhook_events` match a SQL condition, failing the
    /// test after `limit`.
    pub async fn await_events(&self, condition: &str, n: i64, limit: Duration) {
        eventually(
            limit,
            &format!("{n} audit rows where {condition}"),
            || async { (self.count_events(condition).await == n).then_some(()) },
        )
        .await
    }

    /// Rows of a table matching a SQL condition (0 while the database does not exist yet).
    /// Runs on the blocking pool: the test's own runtime may be serving the gateway's traffic.
    pub async fn count(&self, table: &str, condition: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let q = format!("SELECT count(*) AS n FROM {table} WHERE {condition}");
        let url = self.database_url.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url).ok()?;
            sql_query(q)
                .get_result::<Count>(&mut conn)
                .map(|c| c.n)
                .ok()
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.spool_dir);
        if let Ok(client) = redis::Client::open(redis_base()) {
            if let Ok(mut conn) = client.get_connection() {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}:*", self.prefix))
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        }
        if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres", postgres_base())) {
            let _ = sql_query(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.db_name
            ))
            .execute(&mut conn);
        }
    }
}

/// A gateway running inside the test, on a free port.
pub struct TestApp {
    pub address: String,
    pub settings: Settings,
    #[allow(dead_code)] // used by tests that stop a replica
    pub handle: ServerHandle,
    client: awc::Client,
    arbiters: Vec<actix::Arbiter>,
    /// Reloads its configuration file (when it came from one), as SIGHUP does.
    #[allow(dead_code)] // used by the reload tests
    pub reloader: hookgate::reload::Reloader,
}

impl Drop for TestApp {
    /// Stops the delivery and audit threads for good: they would outlive the test's System,
    /// keep working and re-create the keys the test's cleanup removes.
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
        for a in self.arbiters.drain(..) {
            let _ = a.join();
        }
    }
}

/// Builds and starts a gateway with these settings.
pub async fn spawn_app(mut settings: Settings) -> TestApp {
    init();
    // Apps of one test process would share the default replica id (hostname-pid), and so
    // one spool folder: each is a replica of its own, as in production.
    static APPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = APPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    settings.server.replica_id = format!("{}-app{n}", settings.server.replica_id);
    let mut app = Application::build(settings.clone())
        .await
        .expect("application builds");
    let arbiters = app.take_arbiters();
    let reloader = app.reloader();
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        settings,
        handle,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(15))
            .finish(),
        arbiters,
        reloader,
    }
}

/// An answer: status and JSON body (Null when the body is not JSON).
pub type Answer = (u16, Value);

impl TestApp {
    /// The configuration of a source.
    pub fn source(&self, name: &str) -> SourceConfig {
        self.settings
            .source(name)
            .expect("source is configured")
            .clone()
    }

    /// POSTs a body signed now with the source's first secret.
    pub async fn post_signed(&self, source: &str, body: &[u8]) -> Answer {
        let req = Signed::new(&self.source(source), body, unix_now());
        self.post(&req.path, &req.headers, body).await
    }

    /// POSTs raw bytes with these headers.
    pub async fn post(&self, path: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
        let mut req = self
            .client
            .post(format!("{}{path}", self.address))
            .insert_header(("content-type", "application/json"));
        for (k, v) in headers {
            req = req.insert_header((k.as_str(), v.as_str()));
        }
        let mut res = req
            .send_body(body.to_vec())
            .await
            .expect("request completes");
        let bytes = res.body().limit(1 << 20).await.expect("body is read");
        (
            res.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends a request with an optional bearer token; the answer's body as JSON.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>) -> Answer {
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        let mut res = req.send().await.expect("request completes");
        let bytes = res.body().limit(1 << 22).await.expect("body is read");
        (
            res.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends a JSON body with a bearer token; the answer's body as JSON.
    pub async fn call_json(&self, method: &str, path: &str, token: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.call_body(method, path, token, Some("application/json"), &bytes)
            .await
    }

    /// Sends raw bytes, with this Content-Type (or none), with a bearer token.
    pub async fn call_body(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.address))
            .insert_header(("authorization", format!("Bearer {token}")));
        if let Some(ct) = content_type {
            req = req.insert_header(("content-type", ct));
        }
        let mut res = req
            .send_body(body.to_vec())
            .await
            .expect("request completes");
        let bytes = res.body().limit(1 << 22).await.expect("body is read");
        (
            res.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// GETs a path; the body as JSON (Null when it is not JSON).
    pub async fn get(&self, path: &str) -> Answer {
        let (status, text) = self.get_text(path).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GETs a path as text.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let mut res = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request completes");
        let bytes = res.body().limit(1 << 22).await.expect("body is read");
        (
            res.status().as_u16(),
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }
}

/// A request signed as a sender would sign it.
#[derive(Clone)]
pub struct Signed {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Signed {
    /// Signs `body` for `source` at `now`.
    pub fn new(source: &SourceConfig, body: &[u8], now: i64) -> Self {
        let s = sign(source, body, now).expect("source signs");
        Signed {
            path: s.path,
            headers: s.headers,
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a finished child process said.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to its end off the test's runtime (the gateways under test may need it).
pub async fn run(mut cmd: std::process::Command) -> Ran {
    let program = format!("{:?}", cmd.get_program());
    let out = actix_web::rt::task::spawn_blocking(move || cmd.output())
        .await
        .expect("joined")
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}); scripts/dev-services.sh installs what the tests need"
            )
        });
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
