//! Moves spooled webhooks into Redis once it is back: oldest first, through the same atomic
//! dedup + enqueue script as ingest, each removed from the spool only after Redis confirmed
//! it (and, with `redis.min_replicas_acked`, its replicas). A webhook whose key Redis already
//! has is dropped as the duplicate it is.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;

use super::folders::{Folders, SharedJournal};
use super::journal::Position;
use super::record::SpoolRecord;
use crate::queue::{
    enqueue_acked, EnqueueItem, EnqueueOutcome, RedisPool, ReplicaAcks, ENQUEUE_BATCH_LUA,
};
use crate::redis_circuit::{RedisCircuit, RedisMode, Signal};
use crate::source::Source;
use crate::sources::Sources;

/// Webhooks read from the spool per pass.
const PASS: usize = 256;
/// Bytes of webhooks in one script call: a long call would hold up every replica's ingest.
const CALL_BYTES: usize = 4 << 20;
/// How often the drainer looks at the spool when there is nothing to do.
const IDLE: Duration = Duration::from_millis(200);
/// How often it looks for folders of replicas that are gone.
const ADOPT_EVERY: Duration = Duration::from_secs(5);

/// Why a pass stopped.
#[derive(Debug)]
enum Stop {
    /// Redis failed or was slow: the circuit hears of it.
    Redis(String),
    /// The spool itself failed (a disk error): Redis is not to blame.
    Spool(String),
    /// A webhook of a source this replica does not know: another replica's configuration
    /// may (a deploy in progress); the folder is let go for it.
    UnknownSource(String),
}

/// The drainer of one replica.
pub struct Drainer {
    pub folders: Folders,
    /// Shared with `/ready`.
    pub figures: Arc<super::SpoolFigures>,
    pub redis: RedisPool,
    pub sources: Sources,
    pub circuit: Arc<RedisCircuit>,
    /// Bound of one enqueue call.
    pub timeout: Duration,
    /// Replicas that must have what is drained before it leaves the spool.
    pub acks: ReplicaAcks,
}

impl Drainer {
    /// Drains for the life of the process.
    pub async fn run(mut self) {
        let script = redis::Script::new(ENQUEUE_BATCH_LUA);
        let mut adopted_at = Instant::now();
        loop {
            if adopted_at.elapsed() >= ADOPT_EVERY {
                // Adoption reads whole folders: off the async thread.
                let Some(folders) = on_disk(self.folders, |f| {
                    f.adopt_free();
                })
                .await
                else {
                    return;
                };
                self.folders = folders;
                adopted_at = Instant::now();
            }
            let mut moved = 0;
            if self.circuit.mode() == RedisMode::Up {
                for journal in self.folders.all() {
                    match self.drain_pass(&script, &journal).await {
                        Ok(n) => moved += n,
                        Err(Stop::Redis(e)) => {
                            self.circuit.signal(Signal::Failed, &e);
                            break;
                        }
                        Err(Stop::Spool(e)) => log::error!("spool: {e}"),
                        Err(Stop::UnknownSource(name)) => {
                            log::error!(
                                "spool: a folder holds webhooks of source {name:?}, which this \
                                 replica's configuration lacks: left for a replica that has it"
                            );
                            metrics::counter!("hookgate_spool_unknown_source_total").increment(1);
                            self.folders.let_go(&journal);
                        }
                    }
                }
                // Removing drained folders touches the disk: off the async thread too.
                let Some(folders) = on_disk(self.folders, Folders::release_drained).await else {
                    return;
                };
                self.folders = folders;
            }
            let (events, bytes) = self.folders.figures();
            let (_, own_bytes) = self.folders.own_figures();
            self.figures.events.store(events, Ordering::Relaxed);
            self.figures.bytes.store(bytes, Ordering::Relaxed);
            self.figures.own_bytes.store(own_bytes, Ordering::Relaxed);
            metrics::gauge!("hookgate_spool_events").set(events as f64);
            metrics::gauge!("hookgate_spool_bytes").set(bytes as f64);
            if moved == 0 {
                actix_web::rt::time::sleep(IDLE).await;
            }
        }
    }

    /// One pass over one journal: up to [`PASS`] of its oldest webhooks into Redis. Returns
    /// how many left the spool; it stops at the first webhook Redis did not take.
    async fn drain_pass(
        &self,
        script: &redis::Script,
        journal: &SharedJournal,
    ) -> Result<usize, Stop> {
        let reading = journal.clone();
        let records = web::block(move || match reading.lock() {
            Ok(j) => j.oldest(PASS).map_err(|e| e.to_string()),
            Err(_) => Err("the spool's lock is poisoned".to_string()),
        })
        .await
        .map_err(|e| Stop::Spool(e.to_string()))?
        .map_err(Stop::Spool)?;
        if records.is_empty() {
            return Ok(0);
        }
        let mut done: Option<Position> = None;
        let mut done_records = Vec::new();
        let mut stop = None;
        // Calls of one source each, in spool order, bounded in count and bytes.
        'calls: for call in calls(&records) {
            let name = &call[0].1.source;
            let Some(source) = self.sources.get_any(name) else {
                stop = Some(Stop::UnknownSource(name.clone()));
                break;
            };
            let outcomes = match self.enqueue(script, &source, call).await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    stop = Some(Stop::Redis(e));
                    break;
                }
            };
            // Audit rows are written from the stream by the audit consumer.
            for ((position, record), outcome) in call.iter().zip(outcomes) {
                match outcome {
                    EnqueueOutcome::Queued { .. } => {}
                    // In Redis already under this id: an earlier try whose answer was lost
                    // (it timed out, and the webhook was spooled) did enqueue it.
                    EnqueueOutcome::Seen { first_id } if first_id == record.id.to_string() => {}
                    // The same key came through another replica first.
                    EnqueueOutcome::Seen { first_id } => {
                        log::info!(
                            "spool: webhook {} is a duplicate of {first_id}, dropped",
                            record.id
                        );
                    }
                    EnqueueOutcome::Failed { error } => {
                        stop = Some(Stop::Redis(error));
                        source.wake();
                        break 'calls;
                    }
                }
                done = Some(*position);
                done_records.push(record.clone());
            }
            source.wake();
        }
        let moved = done_records.len();
        if let Some(to) = done {
            let journal = journal.clone();
            web::block(move || match journal.lock() {
                Ok(mut j) => j.drained(to, &done_records).map_err(|e| e.to_string()),
                Err(_) => Err("the spool's lock is poisoned".to_string()),
            })
            .await
            .map_err(|e| Stop::Spool(e.to_string()))?
            .map_err(Stop::Spool)?;
            metrics::counter!("hookgate_spool_drained_total").increment(moved as u64);
            self.figures
                .drained
                .fetch_add(moved as u64, Ordering::Relaxed);
        }
        match stop {
            Some(stop) => Err(stop),
            None => Ok(moved),
        }
    }

    /// One script call; with replicas asked for, only an answer they have too counts.
    async fn enqueue(
        &self,
        script: &redis::Script,
        source: &Source,
        call: &[(Position, SpoolRecord)],
    ) -> Result<Vec<EnqueueOutcome>, String> {
        let ids: Vec<String> = call.iter().map(|(_, r)| r.id.to_string()).collect();
        let items: Vec<EnqueueItem<'_>> = call
            .iter()
            .zip(&ids)
            .map(|((_, r), id)| EnqueueItem {
                id,
                key: &r.key,
                event_type: r.event_type.as_deref().unwrap_or(""),
                received_at_ms: r.received_at_ms,
                content_type: r.content_type.as_deref().unwrap_or(""),
                headers: &r.headers,
                body: r.body.as_ref(),
            })
            .collect();
        let attempt = async {
            let (outcomes, replicated) =
                enqueue_acked(&self.redis, script, source, &items, self.acks)
                    .await
                    .map_err(|e| e.to_string())?;
            // Leaving the spool is final: the webhooks must be where a failover keeps them.
            if !replicated {
                return Err(format!(
                    "fewer than {} replicas acknowledged drained webhooks",
                    self.acks.replicas
                ));
            }
            Ok(outcomes)
        };
        actix_web::rt::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| {
                format!(
                    "Redis did not answer within {} ms",
                    self.timeout.as_millis()
                )
            })?
    }
}

/// Runs `work` on the folders on a blocking thread (it reads or removes files) and hands
/// them back; None, logged, when that thread failed.
async fn on_disk(
    mut folders: Folders,
    work: impl FnOnce(&mut Folders) + Send + 'static,
) -> Option<Folders> {
    match web::block(move || {
        work(&mut folders);
        folders
    })
    .await
    {
        Ok(folders) => Some(folders),
        Err(e) => {
            log::error!("spool: a blocking thread failed ({e}); draining stops");
            None
        }
    }
}

/// Consecutive runs of one source, each at most [`PASS`] webhooks and [`CALL_BYTES`] (at
/// least one webhook).
fn calls(records: &[(Position, SpoolRecord)]) -> Vec<&[(Position, SpoolRecord)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, r)) in records.iter().enumerate() {
        let size = r.body.len() + r.headers.len();
        let same = i > start && records[start].1.source == r.source;
        if i > start && (!same || bytes + size > CALL_BYTES) {
            out.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::record::sample;

    fn at(n: u64, source: &str, body: usize) -> (Position, SpoolRecord) {
        let mut r = sample(n);
        r.source = source.into();
        r.body = bytes::Bytes::from(vec![b'x'; body]);
        (
            Position {
                segment: 1,
                offset: n,
            },
            r,
        )
    }

    #[test]
    fn calls_follow_sources_in_order_and_stay_under_the_byte_bound() {
        let records = vec![
            at(1, "a", 10),
            at(2, "a", 10),
            at(3, "b", 10),
            at(4, "a", 3 << 20),
            at(5, "a", 3 << 20),
            at(6, "a", 5 << 20),
        ];
        let sizes: Vec<Vec<u64>> = calls(&records)
            .iter()
            .map(|c| c.iter().map(|(p, _)| p.offset).collect())
            .collect();
        assert_eq!(sizes, vec![vec![1, 2], vec![3], vec![4], vec![5], vec![6]]);
        assert!(calls(&[]).is_empty());
    }
}
