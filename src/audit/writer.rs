//! The AuditWriter actor: buffers audit rows and writes them in batches. While PostgreSQL is
//! down rows wait in memory, up to a byte bound; past it new rows are dropped and counted
//! (the Redis stream, not the table, is the source of truth for pending work).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::prelude::*;
use diesel::sql_types::{self, Array, Integer, Nullable, Text, Timestamptz};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::db::{self, PgPool};
use super::schema::{delivery_attempts, webhook_events};
use crate::config::AuditSettings;
use crate::event::{AttemptRecord, NewEvent};
use crate::status::Status;

/// An accepted event's audit row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhook_events, treat_none_as_default_value = false)]
pub struct NewEventRow {
    id: Uuid,
    source: String,
    event_type: Option<String>,
    idempotency_key: String,
    stream_id: String,
    received_at: OffsetDateTime,
    content_type: Option<String>,
    headers: serde_json::Value,
    payload: Vec<u8>,
    destinations: i32,
    /// A [`Status`] name (the column is text).
    status: &'static str,
    attempts: i32,
    last_error: Option<String>,
    delivered_at: Option<OffsetDateTime>,
}

impl NewEventRow {
    /// The event id.
    pub(super) fn id(&self) -> Uuid {
        self.id
    }
}

/// Records a newly accepted event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NewEventRecord(NewEventRow);

impl NewEventRecord {
    /// The record of `event`, appended to its source's stream as `stream_id`, to be
    /// delivered to `destinations` destinations.
    pub fn new(source: &str, destinations: usize, event: NewEvent, stream_id: String) -> Self {
        let received_at =
            OffsetDateTime::from_unix_timestamp_nanos(event.received_at_ms as i128 * 1_000_000)
                .unwrap_or_else(|_| OffsetDateTime::now_utc());
        NewEventRecord(NewEventRow {
            id: event.id,
            source: source.to_string(),
            event_type: event.event_type,
            idempotency_key: event.key,
            stream_id,
            received_at,
            content_type: event.content_type,
            headers: event.headers,
            payload: event.body.to_vec(),
            destinations: destinations as i32,
            status: Status::Queued.as_str(),
            attempts: 0,
            last_error: None,
            delivered_at: None,
        })
    }

    /// The row itself (the backfill writes it directly).
    pub(super) fn into_row(self) -> NewEventRow {
        self.0
    }

    fn size(&self) -> usize {
        // Payload, key and headers dominate; the rest is a flat allowance.
        self.0.payload.len() + self.0.idempotency_key.len() + 256
    }
}

/// Records several newly accepted events at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NewEventBatch(pub Vec<NewEventRecord>);

/// Records delivery attempts.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttemptBatch(pub Vec<AttemptRecord>);

#[derive(Insertable)]
#[diesel(table_name = delivery_attempts, treat_none_as_default_value = false)]
struct AttemptRow<'a> {
    event_id: Uuid,
    destination: &'a str,
    attempt: i32,
    status_code: Option<i32>,
    duration_ms: i32,
    error: Option<&'a str>,
    attempted_at: OffsetDateTime,
}

/// Rolls the deliveries of the given events up into their `webhook_events` row: the status
/// is the least advanced delivery's (a destination not attempted yet counts as `queued`).
/// Rows already up to date are not rewritten.
const ROLL_UP_SQL: &str = r#"
UPDATE webhook_events e SET
  status = CASE WHEN d.n < e.destinations THEN 'queued' ELSE d.status END,
  attempts = d.attempts,
  last_error = d.last_error,
  delivered_at = CASE WHEN d.n >= e.destinations AND d.status = 'delivered' THEN d.delivered_at END
FROM (
  SELECT event_id, count(*) AS n,
    (ARRAY['delivering', 'retrying', 'dead', 'delivered'])[min(
      CASE status WHEN 'delivering' THEN 1 WHEN 'retrying' THEN 2 WHEN 'dead' THEN 3 ELSE 4 END
    )] AS status,
    max(attempts) AS attempts,
    (array_agg(last_error ORDER BY updated_at DESC) FILTER (WHERE last_error IS NOT NULL))[1] AS last_error,
    max(delivered_at) AS delivered_at
  FROM deliveries WHERE event_id = ANY($1) GROUP BY event_id
) d
WHERE e.id = d.event_id
  AND (e.status, e.attempts, e.last_error, e.delivered_at) IS DISTINCT FROM (
    CASE WHEN d.n < e.destinations THEN 'queued' ELSE d.status END,
    d.attempts,
    d.last_error,
    CASE WHEN d.n >= e.destinations AND d.status = 'delivered' THEN d.delivered_at END
  )
"#;

/// One row per (event, destination) with its latest attempt, unless a later one is there.
const UPSERT_DELIVERIES_SQL: &str = r#"
INSERT INTO deliveries
  (event_id, destination, status, attempts, last_error, last_status_code, updated_at, delivered_at)
SELECT * FROM UNNEST($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (event_id, destination) DO UPDATE SET
  status = excluded.status,
  attempts = excluded.attempts,
  last_error = excluded.last_error,
  last_status_code = excluded.last_status_code,
  updated_at = excluded.updated_at,
  delivered_at = excluded.delivered_at
WHERE deliveries.updated_at <= excluded.updated_at
"#;

/// Resolves once every row buffered so far is written (used at shutdown and by tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Buffers and batches audit rows.
pub struct AuditWriter {
    pool: PgPool,
    database_url: String,
    settings: AuditSettings,
    events: VecDeque<(usize, NewEventRow)>,
    attempts: VecDeque<AttemptRecord>,
    buffered_bytes: usize,
    flushing: bool,
    prepared: bool,
    healthy: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    dropped: u64,
    drain_waiters: Vec<oneshot::Sender<()>>,
}

/// Flat allowance for an attempt record's memory.
const ATTEMPT_SIZE: usize = 256;

impl AuditWriter {
    /// A writer using `pool`; it creates the database and runs migrations before its first
    /// write unless `prepared`.
    pub fn new(
        pool: PgPool,
        database_url: String,
        settings: AuditSettings,
        prepared: bool,
    ) -> Self {
        AuditWriter {
            pool,
            database_url,
            settings,
            events: VecDeque::new(),
            attempts: VecDeque::new(),
            buffered_bytes: 0,
            flushing: false,
            prepared,
            healthy: true,
            retry_at: None,
            backoff: Duration::from_millis(500),
            dropped: 0,
            drain_waiters: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.attempts.is_empty()
    }

    fn full_batch(&self) -> bool {
        self.events.len() >= self.settings.batch_size
            || self.attempts.len() >= self.settings.batch_size
    }

    /// Whether `size` more bytes fit; counts and reports a drop when they do not.
    fn admit(&mut self, size: usize) -> bool {
        if self.buffered_bytes + size <= self.settings.max_buffer_bytes {
            self.buffered_bytes += size;
            return true;
        }
        self.dropped += 1;
        metrics::counter!("hookgate_audit_dropped_total").increment(1);
        if self.dropped == 1 || self.dropped.is_power_of_two() {
            log::error!(
                "audit: buffer full ({} bytes); {} audit rows dropped so far (events are still queued in Redis)",
                self.buffered_bytes,
                self.dropped
            );
        }
        false
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.is_empty() {
            return;
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let n = self.events.len().min(self.settings.batch_size);
        let (sizes, events): (Vec<usize>, Vec<NewEventRow>) = self.events.drain(..n).unzip();
        let m = self.attempts.len().min(self.settings.batch_size);
        let attempts: Vec<AttemptRecord> = self.attempts.drain(..m).collect();
        self.flushing = true;
        let pool = self.pool.clone();
        let url = self.database_url.clone();
        let prepared = self.prepared;
        let work = actix_web::rt::task::spawn_blocking(move || {
            let mut events = events;
            let result = write_batch(&pool, &url, prepared, &mut events, &attempts);
            (sizes, events, attempts, result)
        });
        ctx.spawn(work.into_actor(self).map(|joined, act, ctx| {
            act.flushing = false;
            match joined {
                Ok((sizes, _, attempts, Ok(()))) => {
                    act.prepared = true;
                    act.buffered_bytes -= sizes.iter().sum::<usize>() + attempts.len() * ATTEMPT_SIZE;
                    if !act.healthy {
                        log::info!(
                            "audit: PostgreSQL is back; writing {} buffered rows",
                            act.events.len() + act.attempts.len()
                        );
                    }
                    act.healthy = true;
                    act.retry_at = None;
                    act.backoff = Duration::from_millis(500);
                }
                Ok((sizes, events, attempts, Err(e))) => {
                    if act.healthy {
                        log::warn!(
                            "audit: cannot write to PostgreSQL ({e}); buffering rows in memory (up to {} bytes)",
                            act.settings.max_buffer_bytes
                        );
                    }
                    act.healthy = false;
                    // Back to the front, in order: the rows are written once PostgreSQL is back.
                    for row in sizes.into_iter().zip(events).rev() {
                        act.events.push_front(row);
                    }
                    for a in attempts.into_iter().rev() {
                        act.attempts.push_front(a);
                    }
                    act.retry_at = Some(Instant::now() + act.backoff);
                    act.backoff = (act.backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => log::error!("audit: writer task failed: {e}"),
            }
            metrics::gauge!("hookgate_audit_buffered_rows").set((act.events.len() + act.attempts.len()) as f64);
            if act.is_empty() {
                for waiter in act.drain_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            } else if act.full_batch() || act.retry_at.is_none() {
                act.flush(ctx);
            }
        }));
    }
}

fn write_batch(
    pool: &PgPool,
    url: &str,
    prepared: bool,
    events: &mut Vec<NewEventRow>,
    attempts: &[AttemptRecord],
) -> Result<(), String> {
    if !prepared {
        db::prepare(url).map_err(|e| e.to_string())?;
    }
    let mut rolled = fold_outcomes(events, attempts);
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        if !events.is_empty() && insert_events(conn, events)? {
            // Some rows were there already (written from the stream by a trim, or by an
            // earlier try) and kept: their status comes from `deliveries`, outcomes folded
            // into this batch's rows included, which insert_attempts writes just below.
            rolled.extend(events.iter().map(|e| e.id));
            rolled.sort_unstable();
            rolled.dedup();
        }
        if !attempts.is_empty() {
            insert_attempts(conn, attempts)?;
        }
        if !rolled.is_empty() {
            roll_up(conn, &rolled)?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())
}

/// Writes the outcome of single-destination events whose attempts are in the same batch
/// straight into their new rows (under load, nearly all), and returns the events whose
/// status must be rolled up from `deliveries` instead: attempts of events written earlier,
/// events with several destinations, and new events whose attempts may have been written
/// in an earlier batch.
fn fold_outcomes(events: &mut [NewEventRow], attempts: &[AttemptRecord]) -> Vec<Uuid> {
    let mut latest: HashMap<Uuid, &AttemptRecord> = HashMap::new();
    for a in attempts {
        let slot = latest.entry(a.event_id).or_insert(a);
        if a.attempt >= slot.attempt {
            *slot = a;
        }
    }
    let mut folded = std::collections::HashSet::new();
    let mut roll_up = Vec::new();
    for e in events.iter_mut() {
        match latest.get(&e.id) {
            Some(a) if e.destinations == 1 => {
                e.status = a.delivery_status.as_str();
                e.attempts = a.attempt;
                e.last_error.clone_from(&a.error);
                e.delivered_at = a.delivered_at();
                folded.insert(e.id);
            }
            _ => roll_up.push(e.id),
        }
    }
    roll_up.extend(latest.keys().filter(|id| !folded.contains(*id)));
    roll_up.sort_unstable();
    roll_up.dedup();
    roll_up
}

/// Rolls the deliveries of `ids` up into their `webhook_events` rows.
pub(super) fn roll_up(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<()> {
    diesel::sql_query(ROLL_UP_SQL)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
        .execute(conn)
        .map(|_| ())
}

/// Inserts new event rows; true when some existed already (and were kept).
fn insert_events(conn: &mut PgConnection, events: &Vec<NewEventRow>) -> QueryResult<bool> {
    // COPY costs PostgreSQL a fraction of a multi-row INSERT, but cannot skip rows that exist.
    // They exist when an earlier write committed and its answer was lost, or when a trim wrote
    // them from the stream first: then the batch goes again as INSERT ... ON CONFLICT DO
    // NOTHING, inside a savepoint.
    let copied = conn.transaction(|conn| {
        diesel::copy_from(webhook_events::table)
            .from_insertable(events)
            .execute(conn)
    });
    match copied {
        Ok(_) => Ok(false),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => diesel::insert_into(webhook_events::table)
            .values(events)
            .on_conflict_do_nothing()
            .execute(conn)
            .map(|_| true),
        Err(e) => Err(e),
    }
}

fn insert_attempts(conn: &mut PgConnection, attempts: &[AttemptRecord]) -> QueryResult<()> {
    let rows: Vec<AttemptRow<'_>> = attempts
        .iter()
        .map(|a| AttemptRow {
            event_id: a.event_id,
            destination: &a.destination,
            attempt: a.attempt,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error.as_deref(),
            attempted_at: a.attempted_at,
        })
        .collect();
    diesel::copy_from(delivery_attempts::table)
        .from_insertable(&rows)
        .execute(conn)?;
    // One row per (event, destination): its latest attempt (ON CONFLICT cannot touch a row twice).
    let mut latest: HashMap<(Uuid, &str), &AttemptRecord> = HashMap::new();
    for a in attempts {
        let slot = latest
            .entry((a.event_id, a.destination.as_str()))
            .or_insert(a);
        if a.attempt >= slot.attempt {
            *slot = a;
        }
    }
    // Replicas flush their batches independently: an earlier attempt written after a later
    // one (a failure on one replica, then the success of its retry on another) must not take
    // the row back, hence the WHERE on the time of the attempt.
    let rows: Vec<&AttemptRecord> = latest.into_values().collect();
    diesel::sql_query(UPSERT_DELIVERIES_SQL)
        .bind::<Array<sql_types::Uuid>, _>(rows.iter().map(|a| a.event_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|a| a.destination.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|a| a.delivery_status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Integer>, _>(rows.iter().map(|a| a.attempt).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            rows.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Integer>>, _>(rows.iter().map(|a| a.status_code).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|a| a.attempted_at).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            rows.iter().map(|a| a.delivered_at()).collect::<Vec<_>>(),
        )
        .execute(conn)?;
    Ok(())
}

impl Actor for AuditWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Registered at zero, so that alerts on it have a series before the first drop.
        metrics::counter!("hookgate_audit_dropped_total").increment(0);
        metrics::gauge!("hookgate_audit_buffered_rows").set(0.0);
        let every = Duration::from_millis(self.settings.flush_interval_ms);
        ctx.run_interval(every, |act, ctx| act.flush(ctx));
    }
}

impl Handler<NewEventRecord> for AuditWriter {
    type Result = ();

    fn handle(&mut self, msg: NewEventRecord, ctx: &mut Self::Context) {
        self.handle(NewEventBatch(vec![msg]), ctx);
    }
}

impl Handler<NewEventBatch> for AuditWriter {
    type Result = ();

    fn handle(&mut self, msg: NewEventBatch, ctx: &mut Self::Context) {
        for record in msg.0 {
            let size = record.size();
            if self.admit(size) {
                self.events.push_back((size, record.0));
            }
        }
        if self.full_batch() {
            self.flush(ctx);
        }
    }
}

impl Handler<AttemptBatch> for AuditWriter {
    type Result = ();

    fn handle(&mut self, msg: AttemptBatch, ctx: &mut Self::Context) {
        for record in msg.0 {
            if self.admit(ATTEMPT_SIZE) {
                self.attempts.push_back(record);
            }
        }
        if self.full_batch() {
            self.flush(ctx);
        }
    }
}

impl Handler<Drain> for AuditWriter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        if self.is_empty() && !self.flushing {
            return Box::pin(async {});
        }
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        self.retry_at = None;
        self.flush(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseSettings;
    use diesel::sql_types::BigInt;

    /// A database of its own, dropped at the end.
    struct TempDb {
        url: String,
        name: String,
        base: String,
    }

    impl TempDb {
        fn new() -> TempDb {
            let base = std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let name = format!("hookgate_unit_{}", Uuid::new_v4().simple());
            let url = format!("{base}/{name}");
            db::prepare(&url).expect("the test database is created and migrated");
            TempDb { url, name, base }
        }

        fn count(&self, sql: &str) -> i64 {
            #[derive(QueryableByName)]
            struct Count {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let mut conn = PgConnection::establish(&self.url).expect("connects");
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .expect("counts")
                .n
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres", self.base)) {
                let _ = diesel::sql_query(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .execute(&mut conn);
            }
        }
    }

    fn attempt(event: Uuid, n: i32, status: Status, at: OffsetDateTime) -> AttemptRecord {
        AttemptRecord {
            event_id: event,
            destination: "app".into(),
            attempt: n,
            status_code: Some(if status == Status::Delivered {
                200
            } else {
                503
            }),
            duration_ms: 1,
            error: (status != Status::Delivered).then(|| "503".to_string()),
            attempted_at: at,
            delivery_status: status,
        }
    }

    #[test]
    fn an_earlier_attempt_written_late_does_not_take_a_delivery_back() {
        let db = TempDb::new();
        let pool = db::pool(&DatabaseSettings {
            url: db.url.clone(),
            pool_size: 2,
        });
        let id = Uuid::now_v7();
        let event = NewEvent {
            id,
            key: "k".into(),
            event_type: None,
            received_at_ms: 1_795_000_000_000,
            content_type: None,
            headers: serde_json::json!({}),
            body: bytes::Bytes::from_static(b"{}"),
        };
        let mut events = vec![NewEventRecord::new("orders", 1, event, "1-0".into()).into_row()];
        write_batch(&pool, &db.url, true, &mut events, &[]).expect("event written");
        let t1 = OffsetDateTime::now_utc();
        let t2 = t1 + time::Duration::seconds(1);
        // The retry's success (another replica) is written first, the first failure after.
        write_batch(
            &pool,
            &db.url,
            true,
            &mut Vec::new(),
            &[attempt(id, 2, Status::Delivered, t2)],
        )
        .expect("success written");
        write_batch(
            &pool,
            &db.url,
            true,
            &mut Vec::new(),
            &[attempt(id, 1, Status::Retrying, t1)],
        )
        .expect("failure written");
        assert_eq!(
            db.count(
                "SELECT count(*) AS n FROM deliveries WHERE status = 'delivered' AND attempts = 2"
            ),
            1
        );
        assert_eq!(
            db.count("SELECT count(*) AS n FROM webhook_events WHERE status = 'delivered'"),
            1
        );
        assert_eq!(db.count("SELECT count(*) AS n FROM delivery_attempts"), 2);
    }
}
