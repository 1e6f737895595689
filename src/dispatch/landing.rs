//! Where each webhook of a batch lands: Redis, or the spool when Redis cannot take it in
//! time (the circuit is open, the call failed or was too slow, or this event's step failed).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{DispatchError, Waiting};
use crate::queue::{
    enqueue_acked, EnqueueError, EnqueueItem, EnqueueOutcome, RedisPool, ReplicaAcks,
};
use crate::redis_circuit::{RedisCircuit, RedisMode, Signal};
use crate::source::Source;
use crate::spool::{SpoolError, SpoolRecord, SpoolWriter, Spooled, SPOOL_MARGIN};

/// Where one webhook landed.
#[derive(Debug)]
pub(super) enum Landed {
    Redis(EnqueueOutcome),
    Spool(Result<Spooled, SpoolError>),
    /// Neither took it: the sender gets a 503.
    Nowhere(DispatchError),
}

/// What a Dispatcher needs to land a batch.
#[derive(Clone)]
pub struct Landing {
    pub redis: RedisPool,
    pub script: Arc<redis::Script>,
    pub circuit: Arc<RedisCircuit>,
    /// None when the spool is disabled: then Redis or a 503.
    pub spool: Option<SpoolWriter>,
    /// How long a batch may wait for Redis before it goes to the spool.
    pub redis_timeout: Duration,
    /// Replicas that must have a batch (`WAIT n`) before it is answered queued.
    pub acks: ReplicaAcks,
}

impl Landing {
    /// Lands every webhook of `batch`, in Redis when it can, else in the spool. `waited` is
    /// how long the oldest of them waited behind the previous batch: Redis gets what is left
    /// of its bound, and a batch left with less than half goes to the spool at once.
    pub(super) async fn land(
        &self,
        source: &Source,
        batch: &[Waiting],
        waited: Duration,
    ) -> Vec<Landed> {
        let budget = self.redis_timeout.saturating_sub(waited);
        if self.spool.is_some()
            && (self.circuit.mode() == RedisMode::Down || budget < self.redis_timeout / 2)
        {
            return self.spool_first(source, batch, budget).await;
        }
        let all: Vec<&Waiting> = batch.iter().collect();
        let redis = actix_web::rt::time::timeout(budget, self.enqueue(source, &all));
        let outcomes = match redis.await {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(e)) => return self.fall_back(source, batch, e).await,
            Err(_) => {
                let e = DispatchError::Redis(format!("no answer within {} ms", budget.as_millis()));
                return self.fall_back(source, batch, e).await;
            }
        };
        let (outcomes, replicated) = outcomes;
        let failed: Vec<usize> = (0..outcomes.len())
            .filter(|&i| match &outcomes[i] {
                EnqueueOutcome::Failed { .. } => true,
                // In Redis, but not on enough replicas in time: a failover could lose it, so
                // it goes to the spool as well (its drain is answered "seen" and dropped).
                EnqueueOutcome::Queued { .. } => !replicated,
                // Our own first try (its answer was lost): the same as queued.
                EnqueueOutcome::Seen { first_id } => {
                    !replicated && *first_id == batch[i].event.id.to_string()
                }
            })
            .collect();
        let mut landed: Vec<Landed> = outcomes.into_iter().map(Landed::Redis).collect();
        if let (false, Some(spool)) = (failed.is_empty(), &self.spool) {
            // Such as Redis out of memory, or replicas gone: the next ones would fare alike.
            self.circuit.signal(
                Signal::Failed,
                if replicated {
                    "Redis refused an event's write"
                } else {
                    "too few replicas acknowledged a batch"
                },
            );
            let spooled = spool_all(spool, source, failed.iter().map(|&i| &batch[i])).await;
            for (i, s) in failed.into_iter().zip(spooled) {
                landed[i] = s;
            }
        } else if !replicated {
            // No spool to fall back on: the sender retries, and its retry is answered as the
            // duplicate of this event (same id) once the replicas have caught up.
            let e = DispatchError::Redis(format!(
                "fewer than {} replicas acknowledged within {} ms",
                self.acks.replicas,
                self.acks.timeout.as_millis()
            ));
            for i in failed {
                if !matches!(landed[i], Landed::Redis(EnqueueOutcome::Failed { .. })) {
                    landed[i] = Landed::Nowhere(e.clone());
                }
            }
        }
        landed
    }

    /// Redis alone (the spool refused these): Nowhere for whatever Redis does not take.
    /// A webhook that cannot wait its turn behind the others: the spool, else Redis.
    pub(super) async fn land_late(&self, source: &Source, batch: &[Waiting]) -> Vec<Landed> {
        self.spool_first(source, batch, self.redis_timeout).await
    }

    /// The spool first; what it refuses (full, a failing disk, no answer in time) gets a try
    /// in Redis within `budget`: Redis may be back already, and a try costs less than a 503
    /// (Chatwoot and GitHub never retry). Without a spool, Redis alone.
    async fn spool_first(
        &self,
        source: &Source,
        batch: &[Waiting],
        budget: Duration,
    ) -> Vec<Landed> {
        let Some(spool) = &self.spool else {
            let all: Vec<&Waiting> = batch.iter().collect();
            return self.redis_only(source, &all, budget).await;
        };
        let mut landed = spool_all(spool, source, batch.iter()).await;
        let refused: Vec<usize> = (0..landed.len())
            .filter(|&i| matches!(landed[i], Landed::Spool(Err(_))))
            .collect();
        if !refused.is_empty() {
            let retry: Vec<&Waiting> = refused.iter().map(|&i| &batch[i]).collect();
            let tried = self.redis_only(source, &retry, budget).await;
            for (i, l) in refused.into_iter().zip(tried) {
                if !matches!(l, Landed::Nowhere(_)) {
                    landed[i] = l;
                }
            }
        }
        landed
    }

    /// Redis alone (the spool refused these): Nowhere for whatever Redis does not take.
    async fn redis_only(
        &self,
        source: &Source,
        batch: &[&Waiting],
        budget: Duration,
    ) -> Vec<Landed> {
        let redis = actix_web::rt::time::timeout(budget, self.enqueue(source, batch));
        match redis.await {
            Ok(Ok((outcomes, true))) => outcomes.into_iter().map(Landed::Redis).collect(),
            Ok(Ok((_, false))) => batch
                .iter()
                .map(|_| Landed::Nowhere(DispatchError::Redis("too few replicas".into())))
                .collect(),
            Ok(Err(e)) => batch.iter().map(|_| Landed::Nowhere(e.clone())).collect(),
            Err(_) => batch
                .iter()
                .map(|_| Landed::Nowhere(DispatchError::Redis("no answer in time".into())))
                .collect(),
        }
    }

    async fn fall_back(&self, source: &Source, batch: &[Waiting], e: DispatchError) -> Vec<Landed> {
        self.circuit.signal(Signal::Failed, &e.to_string());
        match &self.spool {
            Some(spool) => spool_all(spool, source, batch.iter()).await,
            None => batch.iter().map(|_| Landed::Nowhere(e.clone())).collect(),
        }
    }

    /// One script call for the whole batch, then `WAIT` on the same connection when replicas
    /// must have it; true when they do (or none are asked for).
    async fn enqueue(
        &self,
        source: &Source,
        batch: &[&Waiting],
    ) -> Result<(Vec<EnqueueOutcome>, bool), DispatchError> {
        let ids: Vec<String> = batch.iter().map(|w| w.event.id.to_string()).collect();
        let headers: Vec<String> = batch.iter().map(|w| w.event.headers.to_string()).collect();
        let items: Vec<EnqueueItem<'_>> = batch
            .iter()
            .zip(&ids)
            .zip(&headers)
            .map(|((w, id), headers)| EnqueueItem {
                id,
                key: &w.event.key,
                event_type: w.event.event_type.as_deref().unwrap_or(""),
                received_at_ms: w.event.received_at_ms,
                content_type: w.event.content_type.as_deref().unwrap_or(""),
                headers,
                body: w.event.body.as_ref(),
            })
            .collect();
        enqueue_acked(&self.redis, &self.script, source, &items, self.acks)
            .await
            .map_err(|e| match e {
                EnqueueError::Connection(e) => DispatchError::Connection(e),
                EnqueueError::Redis(e) => DispatchError::Redis(e.to_string()),
            })
    }
}

/// Spools each webhook; the writer thread fsyncs them together. A spool that does not
/// answer within [`SPOOL_MARGIN`] (a hung disk) is a refusal, never a wait past the sender's.
async fn spool_all<'a>(
    spool: &SpoolWriter,
    source: &Source,
    batch: impl Iterator<Item = &'a Waiting>,
) -> Vec<Landed> {
    let writes = join_all(batch.map(|w| {
        let write = spool.spool(SpoolRecord::new(&source.config.name, &w.event));
        async move {
            actix_web::rt::time::timeout(SPOOL_MARGIN, write)
                .await
                .unwrap_or_else(|_| Err(SpoolError::Io("the spool did not answer in time".into())))
        }
    }));
    writes.await.into_iter().map(Landed::Spool).collect()
}
