//! The AuditWriter actor: buffers audit rows and writes them in batches. While PostgreSQL is
//! down rows wait in memory, up to a byte bound; past it new rows are dropped and counted
//! (the Redis stream, not the table, is the source of truth for pending work).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::db::PgPool;
use super::row::{AttemptBatch, Drain, NewEventBatch, NewEventRecord, NewEventRow};
use super::store::write_batch;
use crate::config::AuditSettings;
use crate::event::AttemptRecord;

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
            let size = record.0.size();
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
