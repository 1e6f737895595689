//! Bringing back what Redis lost. Every partition of a source keeps a marker key in Redis; a
//! Redis that restarts without its data (no persistence, a wiped volume, a failover to an
//! empty replica) comes back without it. When a replica finds a marker gone, one replica
//! (under a lock) re-queues from the audit trail every event of those partitions whose
//! status is not final, from its stored payload and headers and under its own id (receivers
//! de-duplicate), and restores the de-duplication keys of the recent ones, so that a sender's
//! retry is still answered `duplicate`. PostgreSQL remembers which sources were marked, so a
//! marker that was never written (a first start, an upgrade) is written, not mourned.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::PgPool;
use crate::circuit::now_ms;
use crate::event::{ms_of_time, QueuedEvent, ONLY_FIELD, REPLAY_OF_FIELD};
use crate::queue::{self, EnqueueItem, EnqueueOutcome, RedisPool, ReplicaAcks};
use crate::source::{partition_index, Source};
use crate::sources::Sources;

/// Events read from the trail per round trip.
const PAGE: i64 = 500;
/// How long one replica may hold a source's recovery before another may take it over.
const LOCK_MS: u64 = 300_000;

/// Why a check or a recovery did not complete (it is tried again at the next check).
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("no Redis connection: {0}")]
    Connection(String),
    #[error("the audit trail: {0}")]
    Audit(String),
}

/// An event of the trail, as recovery needs it.
#[derive(QueryableByName)]
struct StoredEvent {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    idempotency_key: String,
    #[diesel(sql_type = Nullable<Text>)]
    event_type: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    received_at: OffsetDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    content_type: Option<String>,
    #[diesel(sql_type = Text)]
    headers: String,
    /// None once `audit.payload_retention_days` dropped it.
    #[diesel(sql_type = Nullable<Bytea>)]
    payload: Option<Vec<u8>>,
    /// Whether its status is final (delivered, dead or filtered).
    #[diesel(sql_type = Bool)]
    settled: bool,
    /// The event it replays under a new id, and the one destination it is for.
    #[diesel(sql_type = Nullable<SqlUuid>)]
    replay_of: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    only_destination: Option<String>,
}

/// Events of a source still to deliver, or received within the de-duplication window.
const PAGE_SQL: &str = "SELECT e.id, e.idempotency_key, e.event_type, e.received_at, \
     e.content_type, e.headers::text AS headers, p.payload, \
     e.status IN ('delivered', 'dead', 'filtered') AS settled, e.replay_of, e.only_destination \
     FROM webhook_events e \
     LEFT JOIN event_payloads p ON p.event_id = e.id AND p.received_at = e.received_at \
     WHERE e.source = $1 AND e.id > $2 \
       AND (e.status NOT IN ('delivered', 'dead', 'filtered') OR e.received_at > $3) \
     ORDER BY e.id LIMIT $4";

/// The stream entry that queues a replay copy again as it was: its own id, its original,
/// the one destination it is for.
fn requeue_copy(source: &Source, event: &StoredEvent, body: &[u8]) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&source.partition_of(&event.idempotency_key).stream)
        .arg("*");
    let entry = QueuedEvent {
        id: event.id.to_string(),
        key: event.idempotency_key.clone(),
        event_type: event.event_type.clone().unwrap_or_default(),
        received_at_ms: ms_of_time(event.received_at),
        content_type: event.content_type.clone().unwrap_or_default(),
        headers: event.headers.clone(),
        body: bytes::Bytes::copy_from_slice(body),
        attempt: 1,
        only: None,
        replay_of: None,
        okey: None,
    };
    for (field, value) in entry.fields(1) {
        cmd.arg(field).arg(value);
    }
    if let Some(original) = event.replay_of {
        cmd.arg(REPLAY_OF_FIELD).arg(original.to_string());
    }
    if let Some(only) = &event.only_destination {
        cmd.arg(ONLY_FIELD).arg(only);
    }
    cmd
}

/// What to do with a stored event of a partition Redis lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// Queue it again: it was not delivered (nor dead).
    Requeue,
    /// Only its de-duplication key, for this many seconds more.
    Remember(u64),
    /// Nothing: settled, and its de-duplication window is over.
    Nothing,
}

/// The decision for one stored event: `settled` (delivered or dead), received at
/// `received_ms`, under a de-duplication window of `ttl_seconds`, at `now_ms`.
pub fn restore(settled: bool, received_ms: u64, ttl_seconds: u64, now_ms: u64) -> Restore {
    if !settled {
        return Restore::Requeue;
    }
    let ends_ms = received_ms.saturating_add(ttl_seconds.saturating_mul(1000));
    match ends_ms.saturating_sub(now_ms) / 1000 {
        0 => Restore::Nothing,
        left => Restore::Remember(left),
    }
}

/// The recovery of one replica.
pub struct Recovery {
    pub redis: RedisPool,
    pub postgres: PgPool,
    pub sources: Sources,
    pub acks: ReplicaAcks,
    /// Who holds the lock (the replica id).
    pub replica: String,
}

impl Recovery {
    /// Checks every source's markers every `every`, for the life of the process.
    pub async fn watch(self, every: Duration) {
        metrics::counter!("hookgate_recovered_from_audit_total").increment(0);
        loop {
            for source in self.sources.iter() {
                if let Err(e) = self.check(&source).await {
                    log::warn!("recovery of source {}: {e}", source.config.name);
                }
            }
            actix_web::rt::time::sleep(every).await;
        }
    }

    async fn conn(&self) -> Result<bb8::PooledConnection<'_, queue::RedisManager>, RecoveryError> {
        self.redis
            .get()
            .await
            .map_err(|e| RecoveryError::Connection(e.to_string()))
    }

    /// The lanes of `source` whose marker is gone.
    async fn unmarked(&self, source: &Source) -> Result<Vec<usize>, RecoveryError> {
        let mut conn = self.conn().await?;
        let mut lost = Vec::new();
        // One key at a time: on a cluster each lane's marker lives on its own master.
        for (i, lane) in source.lanes().iter().enumerate() {
            let there: bool = redis::cmd("EXISTS")
                .arg(&lane.marker)
                .query_async(&mut *conn)
                .await?;
            if !there {
                lost.push(i);
            }
        }
        Ok(lost)
    }

    /// Recovers `source` when a marker is gone and no other replica is at it.
    async fn check(&self, source: &Source) -> Result<(), RecoveryError> {
        if self.unmarked(source).await?.is_empty() {
            return Ok(());
        }
        let lock = format!("{}:recovery-lock", source.keys.stream);
        let mut conn = self.conn().await?;
        let mine: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(&self.replica)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_MS)
            .query_async(&mut *conn)
            .await?;
        if mine.is_none() {
            return Ok(());
        }
        drop(conn);
        let result = self.recover(source).await;
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("DEL").arg(&lock).query_async(&mut *conn).await?;
        result
    }

    /// Under the lock: re-queues and remembers what the lost lanes held, then marks them.
    async fn recover(&self, source: &Source) -> Result<(), RecoveryError> {
        // Another replica may have finished just before the lock was ours.
        let lost = self.unmarked(source).await?;
        if lost.is_empty() {
            return Ok(());
        }
        let name = source.config.name.clone();
        let keys: Vec<String> = lost
            .iter()
            .map(|&i| source.lanes()[i].marker.clone())
            .collect();
        // Only partitions marked before lost anything: a partition the layout just added, or
        // one of a first start, has no marker yet and nothing to bring back.
        let (pool, asked) = (self.postgres.clone(), keys.clone());
        let marked: HashSet<String> = blocking(move || {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            #[derive(QueryableByName)]
            struct Marked {
                #[diesel(sql_type = Text)]
                marker: String,
            }
            let rows: Vec<Marked> =
                diesel::sql_query("SELECT marker FROM redis_markers WHERE marker = ANY($1)")
                    .bind::<diesel::sql_types::Array<Text>, _>(&asked)
                    .load(&mut conn)
                    .map_err(|e| e.to_string())?;
            Ok(rows.into_iter().map(|r| r.marker).collect())
        })
        .await?;
        let emptied: HashSet<usize> = lost
            .iter()
            .copied()
            .filter(|&i| marked.contains(&source.lanes()[i].marker))
            .collect();
        let marked_before = !emptied.is_empty();
        let (mut requeued, mut remembered) = (0u64, 0u64);
        if marked_before {
            log::error!(
                "Redis lost the data of source {name} (partitions {emptied:?}: their markers are \
                 gone): re-queuing its unfinished events from the audit trail"
            );
            (requeued, remembered) = self.replay_trail(source, &emptied).await?;
        }
        // The trail first: a marker in Redis without it would not be mourned when lost.
        let pool = self.postgres.clone();
        let recorded = keys.clone();
        blocking(move || {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            diesel::sql_query(
                "INSERT INTO redis_markers (marker, marked_at) SELECT m, now() FROM unnest($1) m \
                 ON CONFLICT (marker) DO UPDATE SET marked_at = excluded.marked_at",
            )
            .bind::<diesel::sql_types::Array<Text>, _>(&recorded)
            .execute(&mut conn)
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
        .await?;
        let mut conn = self.conn().await?;
        // Only the partitions this recovery covered: another that lost its data meanwhile
        // keeps its missing marker, and is recovered at the next check.
        for key in &keys {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg(&self.replica)
                .query_async(&mut *conn)
                .await?;
        }
        if marked_before {
            let _: () = redis::cmd("HSET")
                .arg(&source.keys.recovery)
                .arg("at_ms")
                .arg(now_ms())
                .arg("requeued")
                .arg(requeued)
                .arg("remembered")
                .arg(remembered)
                .arg("replica")
                .arg(&self.replica)
                .query_async(&mut *conn)
                .await?;
            metrics::counter!("hookgate_recovered_from_audit_total", "source" => name.clone())
                .increment(requeued);
            log::error!(
                "source {name}: {requeued} events re-queued from the audit trail, \
                 {remembered} de-duplication keys restored"
            );
        }
        Ok(())
    }

    /// Pages through the source's trail: events of `lost` lanes not settled are queued again,
    /// settled ones within their window get their de-duplication key back. Returns both counts.
    async fn replay_trail(
        &self,
        source: &Source,
        lost: &HashSet<usize>,
    ) -> Result<(u64, u64), RecoveryError> {
        let script = redis::Script::new(queue::ENQUEUE_BATCH_LUA);
        let ttl = source.config.dedup_ttl_seconds;
        let since = OffsetDateTime::now_utc() - time::Duration::seconds(ttl as i64);
        let (mut requeued, mut remembered) = (0u64, 0u64);
        let mut after = Uuid::nil();
        loop {
            let (pool, name) = (self.postgres.clone(), source.config.name.clone());
            let page: Vec<StoredEvent> = blocking(move || {
                let mut conn = pool.get().map_err(|e| e.to_string())?;
                diesel::sql_query(PAGE_SQL)
                    .bind::<Text, _>(&name)
                    .bind::<SqlUuid, _>(after)
                    .bind::<Timestamptz, _>(since)
                    .bind::<diesel::sql_types::BigInt, _>(PAGE)
                    .load(&mut conn)
                    .map_err(|e| e.to_string())
            })
            .await?;
            let Some(last) = page.last() else {
                return Ok((requeued, remembered));
            };
            after = last.id;
            let full = page.len() as i64 == PAGE;
            let now = now_ms();
            let count = source.routing();
            let ids: Vec<String> = page.iter().map(|e| e.id.to_string()).collect();
            let mut items = Vec::new();
            let mut keys = Vec::new();
            let mut copies = Vec::new();
            for (event, id) in page.iter().zip(&ids) {
                if !lost.contains(&partition_index(&event.idempotency_key, count)) {
                    continue;
                }
                let received_ms = ms_of_time(event.received_at);
                match restore(event.settled, received_ms.max(0) as u64, ttl, now) {
                    Restore::Requeue => match &event.payload {
                        // A copy shares its original's key: it is no duplicate of it, so it
                        // goes back as it was, past de-duplication.
                        Some(body) if event.replay_of.is_some() => copies.push((event, body)),
                        Some(body) => items.push(EnqueueItem {
                            id,
                            key: &event.idempotency_key,
                            event_type: event.event_type.as_deref().unwrap_or(""),
                            received_at_ms: received_ms,
                            content_type: event.content_type.as_deref().unwrap_or(""),
                            headers: &event.headers,
                            body,
                        }),
                        // Its payload is past audit.payload_retention_days: nothing to send.
                        None => log::error!(
                            "source {}: event {id} cannot be queued again: its payload was \
                             dropped by audit.payload_retention_days",
                            source.config.name
                        ),
                    },
                    Restore::Remember(left) => keys.push((event, id, left)),
                    Restore::Nothing => {}
                }
            }
            if !items.is_empty() {
                let (outcomes, _) =
                    queue::enqueue_acked(&self.redis, &script, source, &items, self.acks)
                        .await
                        .map_err(|e| RecoveryError::Connection(e.to_string()))?;
                for outcome in outcomes {
                    match outcome {
                        EnqueueOutcome::Queued { .. } => requeued += 1,
                        EnqueueOutcome::Seen { .. } => {}
                        EnqueueOutcome::Failed { error } => {
                            return Err(RecoveryError::Connection(error));
                        }
                    }
                }
                source.wake();
            }
            if !copies.is_empty() {
                let mut conn = self.conn().await?;
                // One command at a time: the entries go to their partitions' slots.
                for (event, body) in copies {
                    let _: String = requeue_copy(source, event, body)
                        .query_async(&mut *conn)
                        .await?;
                    requeued += 1;
                }
                source.wake();
            }
            if !keys.is_empty() {
                let mut conn = self.conn().await?;
                // One command at a time: the keys live in their partitions' slots.
                for (event, id, left) in keys {
                    let key = source.partition_of(&event.idempotency_key);
                    let set: Option<String> = redis::cmd("SET")
                        .arg(key.dedup(&event.idempotency_key))
                        .arg(id)
                        .arg("NX")
                        .arg("EX")
                        .arg(left)
                        .query_async(&mut *conn)
                        .await?;
                    remembered += u64::from(set.is_some());
                }
            }
            if !full {
                return Ok((requeued, remembered));
            }
        }
    }
}

/// Runs PostgreSQL work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, RecoveryError> {
    actix_web::rt::task::spawn_blocking(work)
        .await
        .map_err(|e| RecoveryError::Audit(e.to_string()))?
        .map_err(RecoveryError::Audit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_settled_is_queued_again_whatever_its_age() {
        assert_eq!(restore(false, 0, 60, 10_000_000), Restore::Requeue);
    }

    #[test]
    fn a_settled_event_keeps_its_key_for_what_is_left_of_its_window() {
        // Received 20 s ago, a 60 s window: 40 s left.
        assert_eq!(restore(true, 80_000, 60, 100_000), Restore::Remember(40));
        // Past the window: nothing to restore.
        assert_eq!(restore(true, 0, 60, 100_000), Restore::Nothing);
        // Less than a second left rounds to nothing.
        assert_eq!(restore(true, 40_500, 60, 100_000), Restore::Nothing);
    }
}
