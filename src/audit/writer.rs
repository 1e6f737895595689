//! The AuditWriter actor: buffers audit rows and writes them in batches. While PostgreSQL is
//! down rows wait in memory, up to a byte bound; past it new rows are dropped and counted
//! (the Redis stream, not the table, is the source of truth for pending work).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::prelude::*;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::db::{self, PgPool};
use super::schema::webhook_events;
use crate::config::AuditSettings;
use crate::dispatch::NewEvent;

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
}

/// Records a newly accepted event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NewEventRecord(NewEventRow);

impl NewEventRecord {
    /// The record of `event`, appended to its source's stream as `stream_id`.
    pub fn new(source: &str, event: NewEvent, stream_id: String) -> Self {
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
        })
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

/// Resolves once every row buffered so far is written (used at shutdown and by tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Buffers and batches audit rows.
pub struct AuditWriter {
    pool: PgPool,
    database_url: String,
    settings: AuditSettings,
    buffer: VecDeque<(usize, NewEventRow)>,
    buffered_bytes: usize,
    flushing: bool,
    prepared: bool,
    healthy: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    dropped: u64,
    drain_waiters: Vec<oneshot::Sender<()>>,
}

impl AuditWriter {
    /// A writer using `pool`; it creates the database and runs migrations before its first write.
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
            buffer: VecDeque::new(),
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

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.buffer.is_empty() {
            return;
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let n = self.buffer.len().min(self.settings.batch_size);
        let (sizes, rows): (Vec<usize>, Vec<NewEventRow>) = self.buffer.drain(..n).unzip();
        self.flushing = true;
        let pool = self.pool.clone();
        let url = self.database_url.clone();
        let prepared = self.prepared;
        let work = actix_web::rt::task::spawn_blocking(move || {
            let result = write_batch(&pool, &url, prepared, &rows);
            (sizes.into_iter().zip(rows).collect::<Vec<_>>(), result)
        });
        ctx.spawn(work.into_actor(self).map(|joined, act, ctx| {
            act.flushing = false;
            match joined {
                Ok((batch, Ok(()))) => {
                    act.prepared = true;
                    act.buffered_bytes -= batch.iter().map(|(s, _)| s).sum::<usize>();
                    if !act.healthy {
                        log::info!("audit: PostgreSQL is back; writing {} buffered rows", act.buffer.len());
                    }
                    act.healthy = true;
                    act.retry_at = None;
                    act.backoff = Duration::from_millis(500);
                }
                Ok((batch, Err(e))) => {
                    if act.healthy {
                        log::warn!(
                            "audit: cannot write to PostgreSQL ({e}); buffering rows in memory (up to {} bytes)",
                            act.settings.max_buffer_bytes
                        );
                    }
                    act.healthy = false;
                    // Back to the front, in order: the rows are written once PostgreSQL is back.
                    for row in batch.into_iter().rev() {
                        act.buffer.push_front(row);
                    }
                    act.retry_at = Some(Instant::now() + act.backoff);
                    act.backoff = (act.backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => log::error!("audit: writer task failed: {e}"),
            }
            metrics::gauge!("hookgate_audit_buffered_rows").set(act.buffer.len() as f64);
            if act.buffer.is_empty() {
                for waiter in act.drain_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            } else if act.buffer.len() >= act.settings.batch_size || act.retry_at.is_none() {
                act.flush(ctx);
            }
        }));
    }
}

fn write_batch(
    pool: &PgPool,
    url: &str,
    prepared: bool,
    rows: &Vec<NewEventRow>,
) -> Result<(), String> {
    if !prepared {
        db::prepare(url).map_err(|e| e.to_string())?;
    }
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    // COPY costs PostgreSQL a fraction of a multi-row INSERT, but cannot skip rows that exist.
    // They exist only when an earlier write committed and its answer was lost: then the
    // batch goes again as INSERT ... ON CONFLICT DO NOTHING.
    match diesel::copy_from(webhook_events::table)
        .from_insertable(rows)
        .execute(&mut conn)
    {
        Ok(_) => Ok(()),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => diesel::insert_into(webhook_events::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl Actor for AuditWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = Duration::from_millis(self.settings.flush_interval_ms);
        ctx.run_interval(every, |act, ctx| act.flush(ctx));
    }
}

impl Handler<NewEventBatch> for AuditWriter {
    type Result = ();

    fn handle(&mut self, msg: NewEventBatch, ctx: &mut Self::Context) {
        for record in msg.0 {
            self.buffer_row(record, ctx);
        }
    }
}

impl AuditWriter {
    fn buffer_row(&mut self, msg: NewEventRecord, ctx: &mut Context<Self>) {
        let size = msg.size();
        if self.buffered_bytes + size > self.settings.max_buffer_bytes {
            self.dropped += 1;
            metrics::counter!("hookgate_audit_dropped_total").increment(1);
            if self.dropped == 1 || self.dropped.is_power_of_two() {
                log::error!(
                    "audit: buffer full ({} bytes); {} audit rows dropped so far (events are still queued in Redis)",
                    self.buffered_bytes,
                    self.dropped
                );
            }
            return;
        }
        self.buffered_bytes += size;
        self.buffer.push_back((size, msg.0));
        if self.buffer.len() >= self.settings.batch_size {
            self.flush(ctx);
        }
    }
}

impl Handler<NewEventRecord> for AuditWriter {
    type Result = ();

    fn handle(&mut self, msg: NewEventRecord, ctx: &mut Self::Context) {
        self.buffer_row(msg, ctx);
    }
}

impl Handler<Drain> for AuditWriter {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Drain, ctx: &mut Self::Context) -> Self::Result {
        if self.buffer.is_empty() && !self.flushing {
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
