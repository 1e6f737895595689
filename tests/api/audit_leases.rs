//! The audit trail's partitions across replicas: each partition written by the holder of its
//! lease from its cursor, whatever replica dies, stops or cannot reach PostgreSQL, and the
//! partitions shared among the live replicas.

use std::time::Duration;

use hookgate::queue::EntryId;
use hookgate::source::SourceKeys;

use crate::admin::{clean_until_trimmed, config, post_events, TOKEN};
use crate::helpers::{eventually, spawn_app, TestEnv};
use crate::sink::Sink;
use crate::tcp_proxy::TcpProxy;

/// The replica holding the audit lease of partition `keys`, and how far the audit trail
/// has written its events (the cursor, if any).
async fn audit_state(env: &TestEnv, keys: &SourceKeys) -> (Option<String>, Option<String>) {
    let mut r = env.redis().await;
    let holder: Option<String> = redis::cmd("GET")
        .arg(&keys.audit_lease)
        .query_async(&mut r)
        .await
        .expect("GET");
    let cursor: Option<String> = redis::cmd("HGET")
        .arg(&keys.audit_cursor)
        .arg("events")
        .query_async(&mut r)
        .await
        .expect("HGET");
    // The lease's token is the replica id and a per-process suffix.
    (
        holder.and_then(|h| h.rsplit_once(':').map(|(id, _)| id.to_string())),
        cursor,
    )
}

/// The first entry of `stream`, if any.
async fn first_entry(env: &TestEnv, stream: &str) -> Option<EntryId> {
    let mut r = env.redis().await;
    let first: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut r)
        .await
        .expect("XRANGE");
    first.ids.first().and_then(|e| EntryId::parse(&e.id))
}

#[actix_web::test]
async fn audit_rows_a_replica_read_and_died_with_are_written_by_another() {
    let env = TestEnv::new();
    let sink = Sink::start();
    // Replica A cannot reach PostgreSQL: it delivers, its audit trail waits in Redis, then A
    // goes away.
    let mut settings = env.settings(&config(&sink));
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN));
    settings.audit.claim_idle_ms = 500;
    let mut unreachable = settings.clone();
    unreachable.database.url = "postgres://postgres@127.0.0.1:1/hookgate".into();
    let a = spawn_app(unreachable).await;
    let ids = post_events(&a, "orders", 4).await;
    let keys = SourceKeys::new(&env.prefix, "orders");
    let consumer = a.settings.server.replica_id.clone();
    // It cannot write, so it takes no lease: the events wait in Redis, the cursor stays.
    eventually(Duration::from_secs(30), "all delivered by A", || {
        let (env, keys, consumer, sink) = (&env, &keys, &consumer, &sink);
        async move {
            let (holder, cursor) = audit_state(env, keys).await;
            assert_ne!(holder.as_deref(), Some(consumer.as_str()), "A cannot write");
            // Nothing is written, so the cursor is at most at the first event.
            let first = first_entry(env, &keys.stream).await;
            let cursor = cursor.as_deref().and_then(EntryId::parse);
            assert!(
                cursor <= first,
                "cursor {cursor:?} past the first event {first:?}"
            );
            (sink.distinct("/ok") == 4).then_some(())
        }
    })
    .await;
    assert_eq!(
        sink.distinct("/ok"),
        4,
        "delivered while the trail was away"
    );
    drop(a);

    // Replica B takes the lease and writes from the cursor.
    let b = spawn_app(settings).await;
    env.await_events(
        "source = 'orders' AND status = 'delivered' AND attempts = 1",
        4,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(env.count("delivery_attempts", "status_code = 200").await, 4);
    let holder = audit_state(&env, &keys).await.0;
    assert_eq!(
        holder.as_deref(),
        Some(b.settings.server.replica_id.as_str())
    );
    // Written, so the cursor moved: the outcomes are gone and the stream can be trimmed.
    eventually(
        Duration::from_secs(10),
        "outcomes written and deleted",
        || async {
            let mut r = env.redis().await;
            let left: u64 = redis::cmd("XLEN")
                .arg(&keys.outcomes)
                .query_async(&mut r)
                .await
                .unwrap_or(u64::MAX);
            (left == 0).then_some(())
        },
    )
    .await;
    assert_eq!(clean_until_trimmed(&b, "orders", 4).await, 4);
    let (status, event) = b
        .call("GET", &format!("/api/events/{}", ids[0]), Some(TOKEN))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["status"], "delivered", "{event}");
    assert_eq!(
        event["delivery_attempts"].as_array().map(Vec::len),
        Some(1),
        "{event}"
    );
}

#[actix_web::test]
async fn a_replica_stopped_gracefully_gives_its_audit_lease_up_at_once() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let mut settings = env.settings(&config(&sink));
    // Far longer than the test may wait: only the release lets B write.
    settings.audit.claim_idle_ms = 120_000;
    let a = spawn_app(settings.clone()).await;
    let keys = SourceKeys::new(&env.prefix, "orders");
    post_events(&a, "orders", 2).await;
    env.await_events("source = 'orders'", 2, Duration::from_secs(30))
        .await;
    let holder = audit_state(&env, &keys).await.0;
    assert_eq!(
        holder.as_deref(),
        Some(a.settings.server.replica_id.as_str())
    );
    a.handle.stop(true).await;
    eventually(Duration::from_secs(20), "A's lease given up", || async {
        audit_state(&env, &keys).await.0.is_none().then_some(())
    })
    .await;
    let b = spawn_app(settings).await;
    // A left the writers too: B's share is both partitions, taken at its first check (a
    // partition past the share would wait two checks, 80 s here).
    let leads = SourceKeys::new(&env.prefix, "leads");
    let me = b.settings.server.replica_id.clone();
    eventually(
        Duration::from_secs(10),
        "B holding both partitions",
        || async {
            let both = [
                audit_state(&env, &keys).await.0,
                audit_state(&env, &leads).await.0,
            ];
            both.iter()
                .all(|h| h.as_deref() == Some(me.as_str()))
                .then_some(())
        },
    )
    .await;
    post_events(&b, "orders", 3).await;
    env.await_events("source = 'orders'", 5, Duration::from_secs(30))
        .await;
}

#[actix_web::test]
async fn a_replica_that_cannot_write_leaves_its_partitions_to_one_that_can() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let mut settings = env.settings(&config(&sink));
    // Longer than the test waits, and than the longest pause between A's tries: only A
    // giving its leases up lets B write.
    settings.audit.claim_idle_ms = 20_000;
    // A reaches PostgreSQL through a proxy the test cuts.
    let proxy = TcpProxy::start(5432, true);
    let db_name = env.database_url.rsplit('/').next().expect("db name");
    let mut cut_off = settings.clone();
    cut_off.database.url = format!("postgres://postgres@127.0.0.1:{}/{db_name}", proxy.port);
    let a = spawn_app(cut_off).await;
    let me = a.settings.server.replica_id.clone();
    post_events(&a, "orders", 1).await;
    post_events(&a, "leads", 1).await;
    env.await_events("true", 2, Duration::from_secs(30)).await;
    let lanes = [
        SourceKeys::new(&env.prefix, "orders"),
        SourceKeys::new(&env.prefix, "leads"),
    ];
    for keys in &lanes {
        assert_eq!(
            audit_state(&env, keys).await.0.as_deref(),
            Some(me.as_str())
        );
    }
    // PostgreSQL goes away for A only; B, which reaches it, starts.
    proxy.set_up(false);
    proxy.cut_all();
    let b = spawn_app(settings).await;
    post_events(&b, "orders", 2).await;
    post_events(&b, "leads", 2).await;
    env.await_events("true", 6, Duration::from_secs(15)).await;
    for keys in &lanes {
        let holder = audit_state(&env, keys).await.0;
        assert_eq!(
            holder.as_deref(),
            Some(b.settings.server.replica_id.as_str())
        );
    }
    drop(a);
}

#[actix_web::test]
async fn the_partitions_are_shared_among_the_live_replicas() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let mut settings = env.settings(&config(&sink));
    settings.audit.claim_idle_ms = 900;
    // Two sources: two partitions.
    let lanes = [
        SourceKeys::new(&env.prefix, "orders"),
        SourceKeys::new(&env.prefix, "leads"),
    ];
    let holders = || async {
        let mut holders = Vec::new();
        for keys in &lanes {
            holders.push(audit_state(&env, keys).await.0);
        }
        holders
    };
    let a = spawn_app(settings.clone()).await;
    let alone = eventually(Duration::from_secs(20), "A holding both", || async {
        let h = holders().await;
        h.iter()
            .all(|h| h.as_deref() == Some(a.settings.server.replica_id.as_str()))
            .then_some(h)
    })
    .await;
    assert_eq!(alone.len(), 2);
    let b = spawn_app(settings).await;
    // Under traffic: A's commits must not hold its checks (and the handover) back.
    let posted = std::cell::Cell::new(0);
    eventually(Duration::from_secs(30), "one partition each", || async {
        post_events(&a, "orders", 1).await;
        post_events(&a, "leads", 1).await;
        posted.set(posted.get() + 2);
        let h = holders().await;
        let of = |app: &crate::helpers::TestApp| {
            h.iter()
                .filter(|h| h.as_deref() == Some(app.settings.server.replica_id.as_str()))
                .count()
        };
        (of(&a) == 1 && of(&b) == 1).then_some(())
    })
    .await;
    // Both write: every event of both sources reaches the trail.
    post_events(&a, "orders", 2).await;
    post_events(&b, "leads", 2).await;
    env.await_events("true", posted.get() + 4, Duration::from_secs(30))
        .await;
}
