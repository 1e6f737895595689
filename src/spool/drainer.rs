//! Moves spooled webhooks into Redis once it is back: oldest first, through the same atomic
//! dedup + enqueue script as ingest, each removed from the spool only after Redis confirmed
//! it. A webhook whose key Redis already has is dropped as the duplicate it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::web;

use super::folders::{Folders, SharedJournal};
use super::journal::Position;
use super::record::SpoolRecord;
use crate::audit::{AuditWriter, NewEventBatch, NewEventRecord};
use crate::queue::{enqueue_batch, EnqueueItem, EnqueueOutcome, RedisPool, ENQUEUE_BATCH_LUA};
use crate::redis_circuit::{RedisCircuit, RedisMode, Signal};
use crate::source::Sources;

/// Webhooks read from the spool per pass.
const PASS: usize = 256;
/// How often the drainer looks at the spool when there is nothing to do.
const IDLE: Duration = Duration::from_millis(200);
/// How often it looks for folders of replicas that are gone.
const ADOPT_EVERY: Duration = Duration::from_secs(5);

/// The drainer of one replica.
pub struct Drainer {
    pub folders: Folders,
    /// Shared with `/ready`.
    pub figures: Arc<super::SpoolFigures>,
    pub redis: RedisPool,
    pub sources: Sources,
    pub circuit: Arc<RedisCircuit>,
    pub audit: Addr<AuditWriter>,
    /// Bound of one enqueue call.
    pub timeout: Duration,
}

impl Drainer {
    /// Drains for the life of the process.
    pub async fn run(mut self) {
        let script = redis::Script::new(ENQUEUE_BATCH_LUA);
        let mut adopted_at = Instant::now();
        loop {
            if adopted_at.elapsed() >= ADOPT_EVERY {
                self.folders.adopt_free();
                adopted_at = Instant::now();
            }
            let mut moved = 0;
            if self.circuit.mode() == RedisMode::Up {
                for journal in self.folders.all() {
                    match self.drain_pass(&script, &journal).await {
                        Ok(n) => moved += n,
                        Err(e) => {
                            self.circuit.signal(Signal::Failed, &e);
                            break;
                        }
                    }
                }
                self.folders.release_drained();
            }
            let (events, bytes) = self.folders.figures();
            self.figures
                .events
                .store(events, std::sync::atomic::Ordering::Relaxed);
            self.figures
                .bytes
                .store(bytes, std::sync::atomic::Ordering::Relaxed);
            metrics::gauge!("hookgate_spool_events").set(events as f64);
            metrics::gauge!("hookgate_spool_bytes").set(bytes as f64);
            if moved == 0 {
                actix_web::rt::time::sleep(IDLE).await;
            }
        }
    }

    /// One pass over one journal: up to [`PASS`] of its oldest webhooks into Redis. Returns
    /// how many left the spool; an error stops at the first webhook Redis did not take.
    async fn drain_pass(
        &self,
        script: &redis::Script,
        journal: &SharedJournal,
    ) -> Result<usize, String> {
        let reading = journal.clone();
        let records = web::block(move || match reading.lock() {
            Ok(j) => j.oldest(PASS).map_err(|e| e.to_string()),
            Err(_) => Err("the spool's lock is poisoned".to_string()),
        })
        .await
        .map_err(|e| e.to_string())??;
        if records.is_empty() {
            return Ok(0);
        }
        let mut done: Option<Position> = None;
        let mut done_records = Vec::new();
        let mut audit = Vec::new();
        let mut failure = None;
        // Runs of one source, in spool order: one script call each.
        for run in records.chunk_by(|a, b| a.1.source == b.1.source) {
            let name = &run[0].1.source;
            let Some(source) = self.sources.get(name) else {
                for (_, r) in run {
                    log::error!(
                        "spool: webhook {} of source {name:?} dropped: the source is no longer configured",
                        r.id
                    );
                    metrics::counter!("hookgate_spool_dropped_total").increment(1);
                }
                done = run.last().map(|(p, _)| *p);
                done_records.extend(run.iter().map(|(_, r)| r.clone()));
                continue;
            };
            let outcomes = match self.enqueue(script, source, run).await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            for ((position, record), outcome) in run.iter().zip(outcomes) {
                match outcome {
                    EnqueueOutcome::Queued { stream_id } => audit.push(NewEventRecord::new(
                        &source.config.name,
                        source.config.destinations.len(),
                        record.to_event(),
                        stream_id,
                    )),
                    // In Redis already: sent before under this id (its audit row comes from
                    // the stream), or the same key came through another replica.
                    EnqueueOutcome::Seen { first_id } => {
                        if first_id != record.id.to_string() {
                            log::info!(
                                "spool: webhook {} is a duplicate of {first_id}, dropped",
                                record.id
                            );
                        }
                    }
                    EnqueueOutcome::Failed { error } => {
                        failure = Some(error);
                        break;
                    }
                }
                done = Some(*position);
                done_records.push(record.clone());
            }
            source.wake();
            if failure.is_some() {
                break;
            }
        }
        let moved = done_records.len();
        if !audit.is_empty() {
            self.audit.do_send(NewEventBatch(audit));
        }
        if let Some(to) = done {
            let journal = journal.clone();
            web::block(move || match journal.lock() {
                Ok(mut j) => j.drained(to, &done_records).map_err(|e| e.to_string()),
                Err(_) => Err("the spool's lock is poisoned".to_string()),
            })
            .await
            .map_err(|e| e.to_string())??;
            metrics::counter!("hookgate_spool_drained_total").increment(moved as u64);
        }
        match failure {
            Some(e) => Err(format!("draining the spool: {e}")),
            None => Ok(moved),
        }
    }

    async fn enqueue(
        &self,
        script: &redis::Script,
        source: &crate::source::Source,
        run: &[(Position, SpoolRecord)],
    ) -> Result<Vec<EnqueueOutcome>, String> {
        let ids: Vec<String> = run.iter().map(|(_, r)| r.id.to_string()).collect();
        let items: Vec<EnqueueItem<'_>> = run
            .iter()
            .zip(&ids)
            .map(|((_, r), id)| EnqueueItem {
                id,
                key: &r.key,
                dedup_key: source.keys.dedup(&r.key),
                event_type: r.event_type.as_deref().unwrap_or(""),
                received_at_ms: r.received_at_ms,
                content_type: r.content_type.as_deref().unwrap_or(""),
                headers: &r.headers,
                body: r.body.as_ref(),
            })
            .collect();
        let call = async {
            let mut conn = self.redis.get().await.map_err(|e| e.to_string())?;
            enqueue_batch(
                &mut *conn,
                script,
                &source.keys.stream,
                source.config.dedup_ttl_seconds,
                &items,
            )
            .await
            .map_err(|e| e.to_string())
        };
        actix_web::rt::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                format!(
                    "Redis did not answer within {} ms",
                    self.timeout.as_millis()
                )
            })?
    }
}
