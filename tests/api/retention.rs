//! The audit trail's retention by daily partitions, and the conversion of an installation
//! from before them.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use hookgate::audit::{db, MIGRATIONS};

use std::time::Duration;

use crate::helpers::{run, spawn_app, TestEnv};
use crate::sink::Sink;

const TOKEN: &str = "retention-admin-token";

/// Runs database work off the test's runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    actix_web::rt::task::spawn_blocking(work)
        .await
        .expect("joined")
}

/// One number a query returns (as `n`).
fn number(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// `hookgate prune` with this configuration file.
async fn prune(config: &std::path::Path, dry_run: bool) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"));
    cmd.arg("--config").arg(config).arg("prune");
    if dry_run {
        cmd.arg("--dry-run");
    }
    cmd.env_remove("HOOKGATE_CONFIG").env_remove("DATABASE_URL");
    let ran = run(cmd).await;
    assert!(ran.ok, "prune failed: {}\n{}", ran.stdout, ran.stderr);
    ran.stdout
}

#[actix_web::test]
async fn prune_drops_whole_partitions_past_the_retention() {
    let env = TestEnv::new();
    let url = env.database_url.clone();
    // One event a day over 60 days, each delivered once: rows in every table's partitions.
    blocking(move || {
        db::prepare(&url).expect("database prepared");
        let mut conn = PgConnection::establish(&url).expect("connects");
        conn.batch_execute(
            "SELECT hookgate_ensure_partitions((now() AT TIME ZONE 'UTC')::date - k)
               FROM generate_series(0, 59) k;
             INSERT INTO webhook_events
               (id, source, idempotency_key, stream_id, received_at, status, attempts)
               SELECT gen_random_uuid(), 'orders', 'k' || k, '1-0',
                      now() - make_interval(days => k), 'delivered', 1
               FROM generate_series(0, 59) k;
             INSERT INTO event_payloads (event_id, received_at, payload)
               SELECT id, received_at, '\\x7b7d' FROM webhook_events;
             INSERT INTO deliveries (event_id, destination, status, attempts, updated_at, received_at)
               SELECT id, 'app', 'delivered', 1, received_at, received_at FROM webhook_events;
             INSERT INTO delivery_attempts
               (event_id, destination, attempt, status_code, duration_ms, attempted_at, received_at)
               SELECT id, 'app', 1, 200, 5, received_at, received_at FROM webhook_events;",
        )
        .expect("rows inserted");
    })
    .await;
    let config = env.spool_dir.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[audit]\nretention_days = 30\npayload_retention_days = 7\n",
            env.database_url
        ),
    )
    .expect("config written");

    let said = prune(&config, true).await;
    assert!(
        said.contains("would drop the partitions of 29 days"),
        "{said}"
    );
    let url = env.database_url.clone();
    let rows = blocking(move || {
        let mut conn = PgConnection::establish(&url).expect("connects");
        number(&mut conn, "SELECT count(*) AS n FROM webhook_events")
    })
    .await;
    assert_eq!(rows, 60, "a dry run drops nothing");

    let said = prune(&config, false).await;
    assert!(said.contains("dropped the partitions of 29 days"), "{said}");
    assert!(said.contains("webhook_events: 29 rows"), "{said}");
    assert!(said.contains("delivery_attempts: 29 rows"), "{said}");
    assert!(
        said.contains("dropped the payloads of 23 more days") && said.contains("23 payloads"),
        "{said}"
    );
    let url = env.database_url.clone();
    blocking(move || {
        let mut conn = PgConnection::establish(&url).expect("connects");
        for table in ["webhook_events", "deliveries", "delivery_attempts"] {
            // The last 30 days stay (the day 30 days ago too: part of it is younger).
            assert_eq!(
                number(&mut conn, &format!("SELECT count(*) AS n FROM {table}")),
                31,
                "{table}"
            );
            assert_eq!(
                number(
                    &mut conn,
                    &format!(
                        "SELECT count(*) AS n FROM {table} \
                         WHERE received_at < now() - interval '31 days'"
                    )
                ),
                0,
                "{table}"
            );
            // The old days' partitions are gone, not emptied.
            assert_eq!(
                number(
                    &mut conn,
                    &format!(
                        "SELECT count(*) AS n FROM generate_series(31, 59) k \
                         WHERE to_regclass('{table}_p' || \
                           to_char((now() AT TIME ZONE 'UTC')::date - k, 'YYYYMMDD')) IS NOT NULL"
                    )
                ),
                0,
                "{table}"
            );
        }
        // Payloads are kept 7 days (and the day 7 days ago); older rows stay without them.
        assert_eq!(
            number(&mut conn, "SELECT count(*) AS n FROM event_payloads"),
            8
        );
        assert_eq!(
            number(
                &mut conn,
                "SELECT count(*) AS n FROM event_payloads \
                 WHERE received_at < now() - interval '8 days'"
            ),
            0
        );
        // Today's and the next days' partitions are there for the rows to come.
        assert_eq!(
            number(
                &mut conn,
                "SELECT count(*) AS n FROM generate_series(0, 2) k \
                 WHERE to_regclass('webhook_events_p' || \
                   to_char((now() AT TIME ZONE 'UTC')::date + k, 'YYYYMMDD')) IS NOT NULL"
            ),
            3
        );
    })
    .await;
    let said = prune(&config, false).await;
    assert!(said.contains("nothing dropped"), "{said}");
    let _ = std::fs::remove_file(&config);
}

#[actix_web::test]
async fn an_installation_from_before_partitions_keeps_every_row() {
    let env = TestEnv::new();
    let url = env.database_url.clone();
    blocking(move || {
        db::ensure_database(&url).expect("database created");
        let mut conn = PgConnection::establish(&url).expect("connects");
        // The schema as the previous release left it.
        for _ in 0..4 {
            conn.run_next_migration(MIGRATIONS)
                .expect("an earlier migration");
        }
        conn.batch_execute(
            "INSERT INTO webhook_events (id, source, idempotency_key, stream_id, received_at, payload)
               SELECT gen_random_uuid(), 'orders', 'k' || k, '1-0',
                      now() - make_interval(days => k * 3), '\\x7b7d'
               FROM generate_series(0, 9) k;
             INSERT INTO deliveries (event_id, destination, status, attempts, updated_at)
               SELECT id, 'app', 'delivered', 1, received_at + interval '1 minute' FROM webhook_events;
             INSERT INTO delivery_attempts (event_id, destination, attempt, status_code, duration_ms, attempted_at)
               SELECT id, 'app', 1, 200, 5, received_at + interval '1 minute' FROM webhook_events;
             -- An attempt whose event row never made it.
             INSERT INTO delivery_attempts (event_id, destination, attempt, duration_ms, attempted_at)
               VALUES (gen_random_uuid(), 'app', 1, 5, now() - interval '1 day');",
        )
        .expect("old rows");

        // The new release starts: the conversion runs with the rest.
        db::prepare(&url).expect("migrated");
        assert_eq!(
            number(
                &mut conn,
                "SELECT count(*) AS n FROM pg_partitioned_table p \
                 JOIN pg_class c ON c.oid = p.partrelid \
                 WHERE c.relname IN ('webhook_events', 'deliveries', 'delivery_attempts')"
            ),
            3
        );
        assert_eq!(number(&mut conn, "SELECT count(*) AS n FROM webhook_events"), 10);
        assert_eq!(
            number(
                &mut conn,
                "SELECT count(*) AS n FROM event_payloads p JOIN webhook_events e \
                 ON e.id = p.event_id AND e.received_at = p.received_at WHERE p.payload = '\\x7b7d'"
            ),
            10
        );
        assert_eq!(number(&mut conn, "SELECT count(*) AS n FROM deliveries"), 10);
        assert_eq!(number(&mut conn, "SELECT count(*) AS n FROM delivery_attempts"), 11);
        // Each row in its event's day; the orphan in its own.
        assert_eq!(
            number(
                &mut conn,
                "SELECT count(*) AS n FROM delivery_attempts a JOIN webhook_events e \
                 ON e.id = a.event_id AND e.received_at = a.received_at"
            ),
            10
        );
        assert_eq!(
            number(
                &mut conn,
                "SELECT count(*) AS n FROM deliveries d JOIN webhook_events e \
                 ON e.id = d.event_id AND e.received_at = d.received_at"
            ),
            10
        );
        assert_eq!(
            number(
                &mut conn,
                "SELECT count(*) AS n FROM delivery_attempts WHERE received_at = attempted_at"
            ),
            1
        );
        // The rows sit in their days' partitions: 27 days ago is a partition of its own.
        let old_day = number(
            &mut conn,
            "SELECT count(*) AS n FROM pg_class WHERE relname = 'webhook_events_p' || \
             to_char(((now() - interval '27 days') AT TIME ZONE 'UTC')::date, 'YYYYMMDD')",
        );
        assert_eq!(old_day, 1);
    })
    .await;
}

#[actix_web::test]
async fn an_event_whose_payload_is_gone_shows_its_row_and_refuses_a_replay() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let toml = format!(
        "[[sources]]\nname = \"orders\"\nkind = \"github\"\nsecrets = [\"orders-secret\"]\n\
         [[sources.destinations]]\nname = \"app\"\nurl = \"{}\"\n",
        sink.url("/app")
    );
    let mut settings = env.settings(&toml);
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN));
    let app = spawn_app(settings).await;
    let (status, answer) = app
        .post_signed("orders", &hookgate::send::sample_body(1))
        .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().expect("an id").to_string();
    env.await_events("status = 'delivered'", 1, Duration::from_secs(30))
        .await;
    // As audit.payload_retention_days leaves an old day.
    let url = env.database_url.clone();
    blocking(move || {
        let mut conn = PgConnection::establish(&url).expect("connects");
        conn.batch_execute("DELETE FROM event_payloads")
            .expect("payloads gone");
    })
    .await;
    let (status, event) = app
        .call("GET", &format!("/api/events/{id}"), Some(TOKEN))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["payload"], serde_json::Value::Null, "{event}");
    assert_eq!(event["payload_pruned"], true, "{event}");
    assert_eq!(event["status"], "delivered", "{event}");
    assert_eq!(
        event["delivery_attempts"].as_array().map(Vec::len),
        Some(1),
        "{event}"
    );
    let (status, refused) = app
        .call("POST", &format!("/api/events/{id}/replay"), Some(TOKEN))
        .await;
    assert_eq!(status, 404, "{refused}");
    assert!(
        refused.to_string().contains("payload_retention_days"),
        "{refused}"
    );
}
