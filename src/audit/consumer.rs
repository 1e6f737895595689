//! The audit consumer: every replica reads accepted events from the source streams and
//! delivery outcomes from the outcomes streams through the `audit` consumer group, writes
//! them to PostgreSQL in one transaction per batch, and acknowledges them only after the
//! commit. A replica killed at any moment therefore loses no audit row: what it had read and
//! not written stays pending in Redis and is claimed by another replica, and writing it twice
//! changes nothing (event rows and attempts have unique keys).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use uuid::Uuid;

use super::batch::{hold_back, Batch, ReadEvent};
use super::db::{self, PgPool};
use super::partitions::KnownDays;
use super::row::{pg_text, NewEventRow};
use super::store::write_batch;
use crate::config::AuditSettings;
use crate::event::{AttemptRecord, QueuedEvent};
use crate::queue::{self, RedisPool, AUDIT_GROUP};
use crate::source::Source;
use crate::sources::Sources;

/// How often pending entries of other replicas are looked for, at most.
const CLAIM_EVERY: Duration = Duration::from_secs(10);
/// Acknowledges written entries of one stream and, for outcomes (ARGV[2] = '1'), deletes
/// them in the same step: an outcome acknowledged and not deleted would stay for good. A
/// script, not MULTI: the cluster client follows a failover for scripts, not transactions.
/// KEYS[1] the stream; ARGV[1] the group, ARGV[3..] the entry ids.
const ACK_LUA: &str = r#"
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3))
if ARGV[2] == '1' then redis.call('XDEL', KEYS[1], unpack(ARGV, 3)) end
return 1
"#;

/// Longest wait between tries while PostgreSQL or Redis fail.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What a stream carries for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A source stream: accepted events.
    Events,
    /// An outcomes stream: attempts; entries are deleted once written.
    Outcomes,
}

/// One stream as the consumer reads it.
struct Tap {
    key: String,
    kind: Kind,
    /// The source the stream belongs to.
    source: String,
    /// Where this consumer goes on reading its own pending entries (left by a failed write or
    /// a restart under the same replica id), each once; None once it has read them all.
    pending_from: Option<String>,
    /// Whether the group exists as far as this consumer knows.
    grouped: bool,
    /// Where the next `XAUTOCLAIM` goes on.
    claim_cursor: String,
}

/// The audit consumer of one replica.
pub struct AuditConsumer {
    pub redis: RedisPool,
    pub postgres: PgPool,
    pub database_url: String,
    /// Whether the schema is known to be migrated (else it is prepared before the first write).
    pub prepared: bool,
    pub sources: Sources,
    /// The consumer name: the replica id.
    pub consumer: String,
    pub settings: AuditSettings,
    /// Days whose partitions are known to exist in this consumer's database.
    pub known: KnownDays,
    /// The sources' generation and lane count when their streams were last tapped.
    pub followed: std::cell::Cell<(u64, usize)>,
}

impl AuditConsumer {
    /// Consumes for the life of the process.
    pub async fn run(mut self) {
        metrics::counter!("hookgate_audit_dropped_total").increment(0);
        let mut taps: Vec<Tap> = Vec::new();
        // Twice per idle time: what a dead replica left is taken over soon after it may be.
        let claim_every = (Duration::from_millis(self.settings.claim_idle_ms) / 2)
            .clamp(Duration::from_millis(50), CLAIM_EVERY);
        // The first round looks for entries of dead replicas at once.
        let mut claimed_at = Instant::now()
            .checked_sub(claim_every)
            .unwrap_or_else(Instant::now);
        let mut backoff = Duration::from_millis(200);
        let idle = Duration::from_millis(self.settings.flush_interval_ms);
        // Events waiting a round or so for their outcome (see hold_back).
        let hold = idle * 3;
        let mut held: Vec<ReadEvent> = Vec::new();
        let mut round = 0usize;
        loop {
            self.follow_lanes(&mut taps);
            let claim = claimed_at.elapsed() >= claim_every;
            if claim {
                claimed_at = Instant::now();
            }
            round = round.wrapping_add(1);
            let mut batch = match self.read(&mut taps, claim, round).await {
                Ok(batch) => batch,
                Err(e) => {
                    log::warn!("audit: cannot read from Redis: {e}");
                    actix_web::rt::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let read_nothing = batch.is_empty();
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
            if batch.is_empty() {
                if read_nothing {
                    actix_web::rt::time::sleep(idle).await;
                }
                continue;
            }
            match self.write(batch).await {
                Ok(acks) => {
                    if let Err(e) = self.acknowledge(&taps, acks).await {
                        // Written but not acknowledged: read again later, written again
                        // without effect.
                        log::warn!("audit: written rows not acknowledged in Redis: {e}");
                    }
                    backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    log::warn!(
                        "audit: cannot write to PostgreSQL ({e}); the rows wait in Redis (up to \
                         audit.max_backlog = {} entries per partition)",
                        self.settings.max_backlog
                    );
                    // What was read stays pending with this consumer: read again from the start.
                    for tap in &mut taps {
                        tap.pending_from = Some("0".into());
                    }
                    held.clear();
                    actix_web::rt::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Adds the streams of lanes that appeared since the last round (a layout grew).
    fn follow_lanes(&self, taps: &mut Vec<Tap>) {
        // Lanes only grow, and a reload changes the generation: while neither changed, there
        // is nothing new to tap.
        let lanes: usize = self.sources.iter().map(|s| s.lanes().len()).sum();
        let seen = (self.sources.generation(), lanes);
        if self.followed.get() == seen && !taps.is_empty() {
            return;
        }
        self.followed.set(seen);
        for source in self.sources.iter() {
            for lane in source.lanes() {
                for (key, kind) in [
                    (&lane.stream, Kind::Events),
                    (&lane.outcomes, Kind::Outcomes),
                ] {
                    if !taps.iter().any(|t| &t.key == key) {
                        taps.push(Tap {
                            key: key.clone(),
                            kind,
                            source: source.config.name.clone(),
                            pending_from: Some("0".into()),
                            grouped: false,
                            claim_cursor: "0-0".into(),
                        });
                    }
                }
            }
        }
    }

    /// Reads up to a batch: this consumer's own pending entries first, then new ones, and,
    /// when `claim`, entries other replicas left pending too long. Each round starts at
    /// another stream, so that none waits behind the others under load. A stream that fails
    /// (its master failing over) is skipped for the round; an error only when all fail.
    async fn read(&self, taps: &mut [Tap], claim: bool, round: usize) -> redis::RedisResult<Batch> {
        let mut conn = queue::connection(&self.redis).await?;
        let mut batch = Batch::default();
        let room = self.settings.batch_size;
        let mut failed: Option<redis::RedisError> = None;
        let n = taps.len();
        // Up to a batch of each kind: outcomes must not wait behind a flow of events (their
        // events would be written without them, and updated after).
        for i in (0..n).map(|k| (k + round) % n) {
            let tap = &mut taps[i];
            let taken = match tap.kind {
                Kind::Events => batch.events.len(),
                Kind::Outcomes => batch.attempts.len(),
            };
            if taken >= room {
                continue;
            }
            if !tap.grouped {
                if let Err(e) = queue::ensure_group(&mut *conn, &tap.key, AUDIT_GROUP).await {
                    failed = Some(e);
                    continue;
                }
                tap.grouped = true;
            }
            let count = room - taken;
            let entries = match self.read_tap(&mut *conn, tap, count, claim).await {
                Ok(entries) => entries,
                Err(e) if queue::is_nogroup(&e) => {
                    // Redis lost the group (restarted empty): made again at the next round.
                    tap.grouped = false;
                    tap.pending_from = Some("0".into());
                    continue;
                }
                Err(e) => {
                    failed = Some(e);
                    continue;
                }
            };
            // A source a reload removed is still written: its entries are accepted webhooks.
            let source = self.sources.get_any(&tap.source);
            for entry in entries {
                match (tap.kind, source.as_ref()) {
                    // Gone from the stream (trimmed past the backlog bound): nothing to write.
                    _ if entry.map.is_empty() => {}
                    (Kind::Events, Some(source)) => {
                        if let Some(row) = event_row(source, &entry) {
                            batch.events.push(ReadEvent {
                                tap: i,
                                entry: entry.id,
                                row,
                                since: Instant::now(),
                            });
                            continue;
                        }
                    }
                    (Kind::Outcomes, _) => match AttemptRecord::parse(&entry) {
                        Ok(mut record) => {
                            // A destination's answer may carry NUL characters.
                            record.error = record.error.map(pg_text);
                            batch.attempts.push(record);
                        }
                        Err(e) => log::warn!("audit: {}: {e}", tap.key),
                    },
                    (Kind::Events, None) => {}
                }
                batch.acks.entry(i).or_default().push(entry.id);
            }
        }
        match failed {
            Some(e) if batch.is_empty() => Err(e),
            Some(e) => {
                log::warn!("audit: a stream could not be read this round: {e}");
                Ok(batch)
            }
            None => Ok(batch),
        }
    }

    /// Entries of one stream for this round.
    async fn read_tap(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
        tap: &mut Tap,
        count: usize,
        claim: bool,
    ) -> redis::RedisResult<Vec<StreamId>> {
        if let Some(from) = &tap.pending_from {
            let own = read_group(conn, &tap.key, &self.consumer, from, count).await?;
            match own.last() {
                Some(last) => {
                    tap.pending_from = Some(last.id.clone());
                    return Ok(own);
                }
                None => tap.pending_from = None,
            }
        }
        if claim {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&tap.key)
                .arg(AUDIT_GROUP)
                .arg(&self.consumer)
                .arg(self.settings.claim_idle_ms)
                .arg(&tap.claim_cursor)
                .arg("COUNT")
                .arg(count)
                .query_async(conn)
                .await?;
            tap.claim_cursor = reply.next_stream_id;
            let claimed = reply.claimed;
            if !claimed.is_empty() {
                log::info!(
                    "audit: took over {} entries of {} another replica left unwritten",
                    claimed.len(),
                    tap.key
                );
                return Ok(claimed);
            }
        }
        read_group(conn, &tap.key, &self.consumer, ">", count).await
    }

    /// Writes a batch in one transaction; returns what to acknowledge.
    async fn write(&mut self, batch: Batch) -> Result<HashMap<usize, Vec<String>>, String> {
        let Batch {
            events,
            attempts,
            mut acks,
        } = batch;
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            acks.entry(e.tap).or_default().push(e.entry);
            rows.push(e.row);
        }
        let mut events = rows;
        let (pool, url, prepared, known) = (
            self.postgres.clone(),
            self.database_url.clone(),
            self.prepared,
            self.known.clone(),
        );
        let (events_n, attempts_n) = (events.len(), attempts.len());
        actix_web::rt::task::spawn_blocking(move || {
            if !prepared {
                db::prepare(&url).map_err(|e| e.to_string())?;
            }
            write_batch(&pool, &known, &mut events, &attempts)
        })
        .await
        .map_err(|e| e.to_string())??;
        self.prepared = true;
        metrics::counter!("hookgate_audit_written_total", "kind" => "events")
            .increment(events_n as u64);
        metrics::counter!("hookgate_audit_written_total", "kind" => "attempts")
            .increment(attempts_n as u64);
        Ok(acks)
    }

    /// Acknowledges written entries; outcomes are deleted too (they served their purpose).
    async fn acknowledge(
        &self,
        taps: &[Tap],
        acks: HashMap<usize, Vec<String>>,
    ) -> redis::RedisResult<()> {
        let mut conn = queue::connection(&self.redis).await?;
        let script = redis::Script::new(ACK_LUA);
        for (i, ids) in acks {
            let tap = &taps[i];
            // One stream per call: on a cluster, each stream may live on another master.
            let mut call = script.key(&tap.key);
            call.arg(AUDIT_GROUP)
                .arg(if tap.kind == Kind::Outcomes { "1" } else { "0" })
                .arg(&ids);
            call.invoke_async::<()>(&mut *conn).await?;
        }
        Ok(())
    }
}

/// `XREADGROUP` of one stream for the audit group: `from` is `0` for this consumer's own
/// pending entries, `>` for new ones.
async fn read_group(
    conn: &mut impl redis::aio::ConnectionLike,
    stream: &str,
    consumer: &str,
    from: &str,
    count: usize,
) -> redis::RedisResult<Vec<StreamId>> {
    let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(AUDIT_GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(stream)
        .arg(from)
        .query_async(conn)
        .await?;
    Ok(reply
        .and_then(|r| r.keys.into_iter().next())
        .map(|k| k.ids)
        .unwrap_or_default())
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
