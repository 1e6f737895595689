//! The audit trail when a replica's PostgreSQL turns read-only (a primary demoted to a
//! standby): it answers `SELECT 1` and refuses every write, and the replica must take no
//! partition back from those that can write.
//!
//! Its own test binary: it reads a process-wide counter (`hookgate_audit_write_failures_total`)
//! that other tests' replicas would move.

#[allow(dead_code)]
#[macro_use]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "api/redis_server.rs"]
mod redis_server;
#[allow(dead_code)]
#[path = "api/sink.rs"]
mod sink;

use std::time::Duration;

use hookgate::source::SourceKeys;

use helpers::{eventually, spawn_app, TestApp, TestEnv};
use sink::Sink;

fn config(sink: &Sink) -> String {
    let mut toml = String::new();
    for source in ["orders", "leads"] {
        toml.push_str(&format!(
            "[[sources]]\nname = \"{source}\"\nkind = \"github\"\nsecrets = [\"{source}-secret\"]\n\
             [[sources.destinations]]\nname = \"app\"\nurl = \"{}\"\n\n",
            sink.url("/ok")
        ));
    }
    toml
}

async fn post_event(app: &TestApp, source: &str) {
    let n = uuid::Uuid::new_v4().as_u64_pair().0 >> 16;
    let (status, answer) = app
        .post_signed(source, &hookgate::send::sample_body(n))
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// The replica holding the audit lease of partition `keys` (its token without the suffix).
async fn holder(env: &TestEnv, keys: &SourceKeys) -> Option<String> {
    let mut r = env.redis().await;
    let token: Option<String> = redis::cmd("GET")
        .arg(&keys.audit_lease)
        .query_async(&mut r)
        .await
        .expect("GET");
    token.and_then(|h| h.rsplit_once(':').map(|(id, _)| id.to_string()))
}

/// A PostgreSQL superuser role for one test, dropped on drop; it can be made read-only (as
/// a primary demoted to a standby is), cutting its sessions.
struct TestRole(String);

fn admin_connection() -> diesel::PgConnection {
    use diesel::Connection;
    diesel::PgConnection::establish("postgres://postgres@127.0.0.1:5432/postgres")
        .expect("PostgreSQL")
}

impl TestRole {
    fn create() -> TestRole {
        use diesel::connection::SimpleConnection;
        let name = format!("hgtest_role_{}", uuid::Uuid::new_v4().simple());
        admin_connection()
            .batch_execute(&format!("CREATE ROLE {name} LOGIN SUPERUSER"))
            .expect("the role");
        TestRole(name)
    }

    /// From now on every transaction of the role is read-only; its open sessions are cut.
    fn make_read_only(&self) {
        use diesel::connection::SimpleConnection;
        let name = &self.0;
        admin_connection()
            .batch_execute(&format!(
                "ALTER ROLE {name} SET default_transaction_read_only = on; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'"
            ))
            .expect("read-only");
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        let _ = admin_connection().batch_execute(&format!("DROP ROLE IF EXISTS {}", self.0));
    }
}

#[actix_web::test]
async fn a_replica_whose_postgresql_turned_read_only_takes_no_partition_from_the_others() {
    // Declared first, dropped last: after the test's database (and its sessions) went.
    let role = TestRole::create();
    let env = TestEnv::new();
    let sink = Sink::start();
    let mut settings = env.settings(&config(&sink));
    settings.audit.claim_idle_ms = 900;
    let db_name = env.database_url.rsplit('/').next().expect("db name");
    let mut as_role = settings.clone();
    as_role.database.url = format!("postgres://{}@127.0.0.1:5432/{db_name}", role.0);
    let a = spawn_app(as_role).await;
    let me = a.settings.server.replica_id.clone();
    post_event(&a, "orders").await;
    post_event(&a, "leads").await;
    env.await_events("true", 2, Duration::from_secs(30)).await;
    // A's server turns read-only: it still answers SELECT 1, and refuses every write.
    role.make_read_only();
    post_event(&a, "orders").await;
    let b = spawn_app(settings).await;
    let lanes = [
        SourceKeys::new(&env.prefix, "orders"),
        SourceKeys::new(&env.prefix, "leads"),
    ];
    let them = b.settings.server.replica_id.clone();
    eventually(
        Duration::from_secs(15),
        "B holding both partitions",
        || async {
            let mut both = true;
            for keys in &lanes {
                both &= holder(&env, keys).await.as_deref() == Some(them.as_str());
            }
            both.then_some(())
        },
    )
    .await;
    // Ten checks of A's leases (every 300 ms): it takes none back (it would fail to write
    // each one, briefly), and B writes everything.
    let failures = || async {
        let (_, text) = a.get_text("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix("hookgate_audit_write_failures_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = failures().await;
    assert!(before >= 1, "A's write was refused once");
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut posted = 3;
    while std::time::Instant::now() < until {
        for keys in &lanes {
            let holder = holder(&env, keys).await;
            assert_ne!(holder.as_deref(), Some(me.as_str()), "A cannot write");
        }
        post_event(&a, "leads").await;
        posted += 1;
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(failures().await, before, "A took no partition back");
    env.await_events("true", posted, Duration::from_secs(30))
        .await;
    drop(a);
}
