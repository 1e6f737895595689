//! Trimming a source stream without losing audit rows. Event rows are buffered in the replica
//! that accepted the event and written in batches; a replica killed with SIGKILL loses what it
//! had buffered, and a long PostgreSQL outage can overflow the buffer. The stream still holds
//! those events until they are trimmed, so every entry about to be trimmed is checked against
//! `webhook_events` first and written from the stream when its row is missing.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;
use redis::streams::StreamRangeReply;
use uuid::Uuid;

use super::db::PgPool;
use super::row::{NewEventRecord, NewEventRow};
use super::schema::webhook_events;
use super::store::roll_up;
use crate::circuit::now_ms;
use crate::config::AuditSettings;
use crate::event::QueuedEvent;
use crate::queue::{self, EntryId};
use crate::source::{Source, SourceKeys};

/// Entries read and checked per round trip.
const CHUNK: usize = 500;

/// Past this many entries a stream is trimmed even when the audit rows cannot be checked
/// (PostgreSQL down): Redis running out of memory would stop ingest, which is worse.
const MAX_UNCHECKED_ENTRIES: u64 = 1_000_000;

/// Why a trim did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the audit rows of entries to trim cannot be checked: {0}")]
    Audit(String),
}

/// How old entries must be before they are trimmed: a live replica writes its buffered rows
/// within about a flush interval, so ten of them (at least a second) leaves room to spare.
pub fn settle_time(settings: &AuditSettings) -> Duration {
    Duration::from_millis((settings.flush_interval_ms * 10).max(1_000))
}

/// Removes the entries of one partition's stream of `source` that every destination is done
/// with and that are older than `min_age`, after making sure each has its audit row. Returns how many went.
///
/// Younger entries stay: their rows are normally still on their way from the replica that
/// accepted them, and writing them here would only be wasted work.
///
/// `recheck` carries the rows written by the previous call: their statuses are rolled up
/// again, because a delivery recorded by another replica while a row was being written here
/// can miss it (each transaction sees the other's work only once committed).
pub async fn trim_delivered(
    conn: &mut impl redis::aio::ConnectionLike,
    pg: &PgPool,
    source: &Source,
    partition: &SourceKeys,
    min_age: Duration,
    recheck: &mut Vec<Uuid>,
) -> Result<u64, TrimError> {
    if !recheck.is_empty() {
        let (pool, ids) = (pg.clone(), recheck.clone());
        let rolled = actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            roll_up(&mut conn, &ids).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| TrimError::Audit(e.to_string()))?;
        rolled.map_err(TrimError::Audit)?;
        recheck.clear();
    }
    let (name, stream, groups) = (&source.config.name, &partition.stream, source.groups());
    let Some(floor) = queue::trim_floor(conn, stream, &groups).await? else {
        return Ok(0);
    };
    let young = EntryId(now_ms().saturating_sub(min_age.as_millis() as u64), 0);
    let floor = floor.min(young);
    match backfill_below(conn, pg, name, stream, groups.len(), floor).await {
        Ok(ids) => recheck.extend(ids),
        Err(TrimError::Audit(e)) => {
            let length: u64 = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
            if length <= MAX_UNCHECKED_ENTRIES {
                return Err(TrimError::Audit(e));
            }
            log::error!(
                "source {name}: {length} entries in the stream and their audit rows cannot be checked ({e}); trimming anyway, rows of delivered events may be missing"
            );
        }
        Err(e) => return Err(e),
    }
    Ok(queue::trim_below(conn, stream, floor).await?)
}

/// Writes the missing audit rows of the entries below `floor`; returns their ids.
async fn backfill_below(
    conn: &mut impl redis::aio::ConnectionLike,
    pg: &PgPool,
    source: &str,
    stream: &str,
    destinations: usize,
    floor: EntryId,
) -> Result<Vec<Uuid>, TrimError> {
    let mut start = "-".to_string();
    let mut written = Vec::new();
    loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&start)
            .arg(format!("({floor}"))
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(conn)
            .await?;
        let Some(last) = page.ids.last() else {
            return Ok(written);
        };
        start = format!("({}", last.id);
        let rows: Vec<NewEventRow> = page
            .ids
            .iter()
            .filter_map(|entry| match QueuedEvent::parse(entry) {
                Ok(event) => row(source, destinations, entry.id.clone(), event),
                Err(e) => {
                    log::warn!("source {source}: {e}");
                    None
                }
            })
            .collect();
        let pool = pg.clone();
        let ids = actix_web::rt::task::spawn_blocking(move || write_missing(&pool, rows))
            .await
            .map_err(|e| TrimError::Audit(e.to_string()))?
            .map_err(TrimError::Audit)?;
        written.extend(ids);
        if page.ids.len() < CHUNK {
            return Ok(written);
        }
    }
}

/// The audit row of a stream entry, as its replica would have written it.
fn row(
    source: &str,
    destinations: usize,
    stream_id: String,
    event: QueuedEvent,
) -> Option<NewEventRow> {
    let event = event.into_new_event()?;
    Some(NewEventRecord::new(source, destinations, event, stream_id).into_row())
}

/// Inserts the rows not in `webhook_events` yet, then rolls the deliveries of every row up
/// (only rows that are behind are rewritten); returns the ids of the rows inserted.
///
/// Every destination has acknowledged these entries, so a status still behind its deliveries
/// is a roll-up two replicas' transactions both missed (each ran before the other's commit);
/// this is the last pass before the entries go.
fn write_missing(pool: &PgPool, rows: Vec<NewEventRow>) -> Result<Vec<Uuid>, String> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let ids: Vec<Uuid> = rows.iter().map(NewEventRow::id).collect();
    let existing: HashSet<Uuid> = webhook_events::table
        .select(webhook_events::id)
        .filter(webhook_events::id.eq_any(&ids))
        .load::<Uuid>(&mut conn)
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let missing: Vec<NewEventRow> = rows
        .into_iter()
        .filter(|r| !existing.contains(&r.id()))
        .collect();
    let missing_ids: Vec<Uuid> = missing.iter().map(NewEventRow::id).collect();
    if !missing.is_empty() {
        diesel::insert_into(webhook_events::table)
            .values(&missing)
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .map_err(|e| e.to_string())?;
    }
    // After the insert is committed: deliveries recorded from now on roll up into these rows.
    roll_up(&mut conn, &ids).map_err(|e| e.to_string())?;
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    log::warn!(
        "audit: wrote {} event rows from the stream: the replica that accepted them stopped before writing them",
        missing.len()
    );
    metrics::counter!("hookgate_audit_backfilled_total").increment(missing.len() as u64);
    Ok(missing_ids)
}
