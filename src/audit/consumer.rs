//! The audit consumer. For each partition whose audit lease it holds, a replica reads
//! accepted events from the source stream and delivery outcomes from the outcomes stream,
//! from the partition's cursor in Redis (`queue::audit_cursor`), writes them to PostgreSQL in
//! one transaction per batch, and moves the cursor only after the commit. A replica killed at
//! any moment therefore loses no audit row: its leases run out, and the next holder reads
//! again from the cursor; writing a row twice changes nothing (event rows and attempts have
//! unique keys).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::streams::{StreamId, StreamRangeReply};
use uuid::Uuid;

use super::batch::{hold_back, Batch, ReadEvent};
use super::db::{self, PgPool};
use super::lanes::{probe_delay, AuditLeases, Hold, Lane, Standing};
use super::partitions::KnownDays;
use super::pressure::{after_write, yield_step, CpuPressure, Yield, SATURATED};
use super::row::{pg_text, NewEventRow};
use super::store::write_batch;
use crate::config::AuditSettings;
use crate::event::{AttemptRecord, QueuedEvent};
use crate::queue::{self, EntryId, RedisPool};
use crate::source::Source;
use crate::sources::Sources;

/// Longest wait between tries while PostgreSQL or Redis fail.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The audit consumer of one replica.
pub struct AuditConsumer {
    pub redis: RedisPool,
    pub postgres: PgPool,
    pub database_url: String,
    /// Whether the schema is known to be migrated (else it is prepared before the first write).
    pub prepared: std::cell::Cell<bool>,
    pub sources: Sources,
    /// Who holds this replica's leases (see [`AuditLeases`]).
    pub leases: AuditLeases,
    pub settings: AuditSettings,
    /// Days whose partitions are known to exist in this consumer's database.
    pub known: KnownDays,
    /// The sources' generation and lane count when their partitions were last followed.
    pub followed: std::cell::Cell<(u64, usize)>,
    /// Where this consumer stands among the writers (see [`Standing`]).
    pub(crate) standing: std::cell::Cell<Standing>,
}

impl AuditConsumer {
    /// Consumes for the life of the process, on a thread of its own.
    pub async fn run(mut self) {
        super::background::lower_priority(self.settings.nice);
        metrics::counter!("hookgate_audit_dropped_total").increment(0);
        metrics::counter!("hookgate_audit_write_failures_total").increment(0);
        let mut lanes: Vec<Lane> = Vec::new();
        let mut backoff = Duration::from_millis(200);
        let idle = Duration::from_millis(self.settings.flush_interval_ms);
        // Events waiting a round or so for their outcome (see hold_back).
        let hold = idle * 3;
        let mut held: Vec<ReadEvent> = Vec::new();
        let mut round = 0usize;
        let (mut pressure, mut yielding) = (CpuPressure::default(), Yield::No);
        loop {
            self.follow_lanes(&mut lanes);
            if let Err(e) = self.keep_leases(&mut lanes, &mut held).await {
                log::warn!("audit: cannot reach Redis: {e}");
                metrics::gauge!("hookgate_audit_yielding").set(0.0);
                actix_web::rt::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            let skip;
            (yielding, skip) = self.pace(&lanes, yielding, &mut pressure).await;
            if skip {
                actix_web::rt::time::sleep(idle).await;
                continue;
            }
            round = round.wrapping_add(1);
            let (mut batch, more) = match self.read(&mut lanes, round).await {
                Ok(read) => read,
                Err(e) => {
                    log::warn!("audit: cannot read from Redis: {e}");
                    actix_web::rt::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let outcomes: HashSet<Uuid> = batch.attempts.iter().map(|a| a.event_id).collect();
            let (now, later): (Vec<ReadEvent>, Vec<ReadEvent>) =
                held.drain(..).chain(batch.events).partition(|e| {
                    !hold_back(
                        e.row.destinations,
                        outcomes.contains(&e.row.id),
                        e.since.elapsed(),
                        hold,
                    )
                });
            batch.events = now;
            held = later;
            if !batch.is_empty() {
                if let Err(e) = self.write(batch).await {
                    metrics::counter!("hookgate_audit_write_failures_total").increment(1);
                    log::warn!(
                        "audit: cannot write to PostgreSQL ({e}); the rows wait in Redis (up to \
                         audit.max_backlog = {} entries per partition)",
                        self.settings.max_backlog
                    );
                    // Let another replica, which may reach PostgreSQL, take the partitions
                    // (this one takes none until PostgreSQL answers it again); giving a lease
                    // up rewinds its partition to the cursor and drops what was read.
                    self.give_up(&mut lanes, &mut held).await;
                    let standing = self.standing.get();
                    let failed_writes = standing.failed_writes.saturating_add(1);
                    self.standing.set(Standing {
                        writes_ok: false,
                        failed_writes,
                        probe_after: Some(
                            Instant::now() + probe_delay(self.lease_ms(), failed_writes),
                        ),
                        ..standing
                    });
                    actix_web::rt::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                self.standing.set(Standing {
                    writes_ok: true,
                    failed_writes: 0,
                    ..self.standing.get()
                });
            }
            backoff = Duration::from_millis(200);
            if let Err(e) = self.commit(&mut lanes, &mut held).await {
                // Written, the cursor not moved: read again later, written again to no effect.
                log::warn!("audit: written rows not marked in Redis: {e}");
            }
            yielding = after_write(yielding, more);
            // Unless a batch was full, wait for the next one to fill: under load, fewer and
            // fuller transactions cost PostgreSQL far less per row.
            if !more {
                actix_web::rt::time::sleep(idle).await;
            }
        }
    }

    /// Whether this round waits for the host's CPUs to calm down (see `pressure`), and the
    /// next state: only while it is saturated, for `audit.yield_ms` at most, and while every
    /// partition held is far below `audit.max_backlog` (past it unwritten entries go).
    async fn pace(
        &self,
        lanes: &[Lane],
        state: Yield,
        pressure: &mut CpuPressure,
    ) -> (Yield, bool) {
        let longest = Duration::from_millis(self.settings.yield_ms);
        if longest.is_zero() {
            return (Yield::No, false);
        }
        let share = pressure.share();
        let saturated = share.is_some_and(|s| s >= SATURATED);
        let backlog_ok = saturated
            && state != Yield::CatchingUp
            && self.backlogs_short(lanes).await.unwrap_or(false);
        let (next, skip) = yield_step(state, saturated, backlog_ok, Instant::now(), longest);
        if matches!((state, next), (Yield::No, Yield::Since(_))) {
            log::debug!(
                "audit: the host's CPUs are saturated ({:.0} % of the time some task waited \
                 for one): the trail waits for up to {} ms",
                share.unwrap_or_default() * 100.0,
                longest.as_millis()
            );
        }
        metrics::gauge!("hookgate_audit_yielding").set(if skip { 1.0 } else { 0.0 });
        (next, skip)
    }

    /// Whether every partition held has less than half of `audit.max_backlog` in its stream
    /// and in its outcomes stream (outcomes past the bound are dropped).
    async fn backlogs_short(&self, lanes: &[Lane]) -> redis::RedisResult<bool> {
        let held: Vec<&Lane> = lanes.iter().filter(|l| l.held()).collect();
        if held.is_empty() {
            return Ok(true);
        }
        let mut conn = queue::connection(&self.redis).await?;
        let mut longest = 0u64;
        // One pipeline per partition: partitions live in different slots on a cluster.
        for lane in held {
            let (events, outcomes): (u64, u64) = redis::pipe()
                .cmd("XLEN")
                .arg(&lane.keys.stream)
                .cmd("XLEN")
                .arg(&lane.keys.outcomes)
                .query_async(&mut *conn)
                .await?;
            longest = longest.max(events).max(outcomes);
        }
        Ok(longest < self.settings.max_backlog / 2)
    }

    /// Adds the partitions that appeared since the last round (a layout grew, a reload).
    fn follow_lanes(&self, lanes: &mut Vec<Lane>) {
        // Lanes only grow, and a reload changes the generation: while neither changed, there
        // is nothing new to follow.
        let count: usize = self.sources.iter().map(|s| s.lanes().len()).sum();
        let seen = (self.sources.generation(), count);
        if self.followed.get() == seen && !lanes.is_empty() {
            return;
        }
        self.followed.set(seen);
        for source in self.sources.iter() {
            for keys in source.lanes() {
                if !lanes.iter().any(|l| l.keys.stream == keys.stream) {
                    let start = EntryId(0, 0);
                    lanes.push(Lane {
                        keys: keys.clone(),
                        source: source.config.name.clone(),
                        hold: Hold::Elsewhere(None),
                        events_from: start,
                        outcomes_from: start,
                        committed: (start, start),
                        seen_free: false,
                        yielded_at: None,
                    });
                }
            }
        }
    }

    /// The lease's lifetime: a dead replica's partitions are taken over after it.
    pub(super) fn lease_ms(&self) -> u64 {
        self.settings.claim_idle_ms
    }

    /// Reads up to a batch of events and one of outcomes from the partitions this replica
    /// holds, each from where it stopped. Each round starts at another partition, so that none
    /// waits behind the others under load. A partition that fails (its master failing over)
    /// is skipped for the round; an error only when all fail. Also says whether a kind filled
    /// its batch (more is likely waiting).
    async fn read(&self, lanes: &mut [Lane], round: usize) -> redis::RedisResult<(Batch, bool)> {
        let mut batch = Batch::default();
        if !lanes.iter().any(Lane::held) {
            return Ok((batch, false));
        }
        let mut conn = queue::connection(&self.redis).await?;
        let room = self.settings.batch_size;
        let (mut read_any, mut failed) = (false, None);
        let n = lanes.len();
        for i in (0..n).map(|k| (k + round) % n) {
            let lane = &mut lanes[i];
            // Up to a batch of each kind: outcomes must not wait behind a flow of events
            // (their events would be written without them, and updated after).
            let (events_room, outcomes_room) = (
                room.saturating_sub(batch.events.len()),
                room.saturating_sub(batch.attempts.len()),
            );
            if !lane.held() || (events_room == 0 && outcomes_room == 0) {
                continue;
            }
            let mut pipe = redis::pipe();
            for (stream, from, count) in [
                (&lane.keys.stream, lane.events_from, events_room),
                (&lane.keys.outcomes, lane.outcomes_from, outcomes_room),
            ] {
                // COUNT 0 would mean no limit: ask for one and leave it for the next round.
                pipe.cmd("XRANGE")
                    .arg(stream)
                    .arg(from.to_string())
                    .arg("+")
                    .arg("COUNT")
                    .arg(count.max(1));
            }
            let (events, outcomes): (StreamRangeReply, StreamRangeReply) =
                match pipe.query_async(&mut *conn).await {
                    Ok(read) => read,
                    Err(e) => {
                        failed = Some(e);
                        continue;
                    }
                };
            let events = &events.ids[..events.ids.len().min(events_room)];
            let outcomes = &outcomes.ids[..outcomes.ids.len().min(outcomes_room)];
            read_any |= !events.is_empty() || !outcomes.is_empty();
            if let Some(last) = events.last().and_then(|e| EntryId::parse(&e.id)) {
                lane.events_from = last.next();
            }
            if let Some(last) = outcomes.last().and_then(|e| EntryId::parse(&e.id)) {
                lane.outcomes_from = last.next();
            }
            // A source a reload removed is still written: its entries are accepted webhooks.
            if let Some(source) = self.sources.get_any(&lane.source) {
                for entry in events {
                    let (Some(row), Some(id)) =
                        (event_row(&source, entry), EntryId::parse(&entry.id))
                    else {
                        continue;
                    };
                    batch.events.push(ReadEvent {
                        lane: i,
                        entry: id,
                        row,
                        since: Instant::now(),
                    });
                }
            }
            for entry in outcomes {
                match AttemptRecord::parse(entry) {
                    Ok(mut record) => {
                        // A destination's answer may carry NUL characters.
                        record.error = record.error.map(pg_text);
                        batch.attempts.push(record);
                    }
                    Err(e) => log::warn!("audit: {}: {e}", lane.keys.outcomes),
                }
            }
        }
        let more = batch.events.len() >= room || batch.attempts.len() >= room;
        match failed {
            Some(e) if !read_any => Err(e),
            Some(e) => {
                log::warn!("audit: a partition could not be read this round: {e}");
                Ok((batch, more))
            }
            None => Ok((batch, more)),
        }
    }

    /// Writes a batch in one transaction.
    async fn write(&mut self, batch: Batch) -> Result<(), String> {
        let mut events: Vec<NewEventRow> = batch.events.into_iter().map(|e| e.row).collect();
        let attempts = batch.attempts;
        let (pool, url, prepared, known) = (
            self.postgres.clone(),
            self.database_url.clone(),
            self.prepared.get(),
            self.known.clone(),
        );
        let (events_n, attempts_n) = (events.len(), attempts.len());
        let nice = self.settings.nice;
        actix_web::rt::task::spawn_blocking(move || {
            super::background::lower_priority(nice);
            if !prepared {
                db::prepare(&url).map_err(|e| e.to_string())?;
            }
            write_batch(&pool, &known, &mut events, &attempts)
        })
        .await
        .map_err(|e| e.to_string())??;
        self.prepared.set(true);
        metrics::counter!("hookgate_audit_written_total", "kind" => "events")
            .increment(events_n as u64);
        metrics::counter!("hookgate_audit_written_total", "kind" => "attempts")
            .increment(attempts_n as u64);
        Ok(())
    }
}

/// The audit row of a source stream entry; None (logged) when it is malformed.
fn event_row(source: &Source, entry: &StreamId) -> Option<NewEventRow> {
    let event = match QueuedEvent::parse(entry) {
        Ok(event) => event,
        Err(e) => {
            log::warn!("audit: source {}: {e}", source.config.name);
            return None;
        }
    };
    let replay_of = event
        .replay_of
        .as_deref()
        .and_then(|id| uuid::Uuid::parse_str(id).ok());
    let only = event.only.clone();
    let event = event.into_new_event()?;
    Some(
        NewEventRow::new(
            &source.config.name,
            source.config.destinations.len(),
            event,
            entry.id.clone(),
        )
        .replaying(replay_of, only),
    )
}
