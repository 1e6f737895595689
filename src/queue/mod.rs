//! Redis Streams: the connection pool, the atomic de-duplicate-and-enqueue scripts, the
//! settle scripts, the outbound rate limiter (GCRA), stream upkeep (groups, trimming) and the
//! audit trail's cursor.

mod audit_cursor;
mod enqueue;
mod entry_id;
mod groups;
mod layout;
// Its Lua fragments are macros the settle scripts are built from.
#[macro_use]
mod ordering;
mod pool;
mod rate;
mod settle;
mod trim;

pub use audit_cursor::{
    audit_commit, audit_lease, audit_lease_free, audit_unlease, audit_writer_leave, audit_writers,
    audited_floor, first_unwritten, AuditLease, AUDIT_COMMIT_LUA, AUDIT_LEASE_LUA,
    AUDIT_UNLEASE_LUA,
};
pub use enqueue::{
    enqueue_acked, enqueue_batch, replicated, EnqueueError, EnqueueItem, EnqueueOutcome,
    ReplicaAcks, ENQUEUE_BATCH_LUA,
};
pub use entry_id::EntryId;
pub use groups::{ensure_group, is_nogroup, stream_groups};
pub use layout::{agree_layouts, follow_layouts, Agreed};
pub use ordering::{
    LEASE_LOST, ORDER_ADMIT_LUA, ORDER_DISCARD_LUA, ORDER_FLUSH_LUA, ORDER_LEASE_LUA,
    ORDER_READ_LUA, ORDER_SWEEP_LUA, ORDER_UNLEASE_LUA,
};
pub use pool::{connection, pool, pool_of, RedisManager, RedisPool};
pub use rate::{take_tokens, RateGrant, RATE_TAKE_LUA};
pub use settle::{
    PROMOTE_DUE_LUA, SETTLE_DEAD_LUA, SETTLE_DEAD_ORDERED_LUA, SETTLE_DELIVERED_LUA,
    SETTLE_DELIVERED_ORDERED_LUA, SETTLE_RETRY_LUA,
};
pub use trim::{trim_below, trim_floor, trim_plan, trim_settled, Floors};

/// A connection to the shared Redis of the tests (`TEST_REDIS_URL`, else the local one),
/// for the unit tests that run scripts on a real Redis.
#[cfg(test)]
pub(crate) async fn test_connection() -> redis::aio::MultiplexedConnection {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url)
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("the shared Redis runs (scripts/dev-services.sh)")
}

#[cfg(test)]
mod redis_tests {
    use super::*;

    #[actix_web::test]
    async fn a_missing_group_is_recognised_by_its_code_even_inside_a_script() {
        let mut conn = test_connection().await;
        let stream = format!("hgtest-{}:{{s}}:stream", uuid::Uuid::new_v4().simple());
        let err =
            redis::Script::new("return redis.call('XAUTOCLAIM', KEYS[1], 'g', 'c', 0, '0-0')")
                .key(&stream)
                .invoke_async::<()>(&mut conn)
                .await
                .expect_err("no such group");
        assert!(is_nogroup(&err), "{err:?}");

        assert!(stream_groups(&mut conn, &stream)
            .await
            .expect("asked")
            .is_none());
        ensure_group(&mut conn, &stream, "g").await.expect("group");
        let groups = stream_groups(&mut conn, &stream)
            .await
            .expect("asked")
            .expect("a stream");
        assert_eq!(groups.groups.len(), 1);
        assert_eq!(groups.groups[0].name, "g");
        let _: () = redis::cmd("DEL")
            .arg(&stream)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }

    #[actix_web::test]
    async fn a_batch_queues_new_keys_once_and_answers_repeats_with_the_first_id() {
        let mut conn = test_connection().await;
        let prefix = format!("hgtest-{}", uuid::Uuid::new_v4().simple());
        let keys = crate::source::SourceKeys::new(&prefix, "src");
        let item = |id: &'static str, key: &'static str| EnqueueItem {
            id,
            key,
            event_type: "t",
            received_at_ms: 1,
            content_type: "",
            headers: "{}",
            body: b"{}",
        };
        let script = redis::Script::new(ENQUEUE_BATCH_LUA);
        let first = enqueue_batch(&mut conn, &script, &keys, 60, &[&item("id-a", "a")])
            .await
            .expect("batch");
        assert!(
            matches!(first[0], EnqueueOutcome::Queued { .. }),
            "{first:?}"
        );
        // A repeat of an earlier batch, a repeat within this batch, and new keys.
        let batch = [
            &item("id-b", "b"),
            &item("id-a2", "a"),
            &item("id-b2", "b"),
            &item("id-c", "c"),
        ];
        let out = enqueue_batch(&mut conn, &script, &keys, 60, &batch)
            .await
            .expect("batch");
        assert!(matches!(out[0], EnqueueOutcome::Queued { .. }), "{out:?}");
        assert_eq!(
            out[1],
            EnqueueOutcome::Seen {
                first_id: "id-a".into()
            }
        );
        assert_eq!(
            out[2],
            EnqueueOutcome::Seen {
                first_id: "id-b".into()
            }
        );
        assert!(matches!(out[3], EnqueueOutcome::Queued { .. }), "{out:?}");
        let len: usize = redis::cmd("XLEN")
            .arg(&keys.stream)
            .query_async(&mut conn)
            .await
            .expect("XLEN");
        assert_eq!(len, 3);
        let mut del = redis::cmd("DEL");
        del.arg(&keys.stream);
        for k in ["a", "b", "c"] {
            del.arg(keys.dedup(k));
        }
        let _: () = del.query_async(&mut conn).await.expect("DEL");
    }
}
