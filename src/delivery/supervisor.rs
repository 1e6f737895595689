//! The per-source supervisor actor: owns the source's destination workers on its own arbiter,
//! restarted by `actix::Supervisor` if a worker loop dies, drained on shutdown.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;

use super::budget::Budget;
use super::trimmer::trim_loop;
use super::worker::Worker;
use crate::config::{DeliverySettings, RedisSettings};
use crate::notify::Notifier;
use crate::queue;
use crate::source::Source;

/// Stops reading and claiming, waits for in-flight deliveries (up to the grace period) and
/// leaves everything else pending for the other replicas.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Runs the delivery of one source.
pub struct SourceSupervisor {
    source: Arc<Source>,
    budget: Budget,
    redis: RedisSettings,
    settings: DeliverySettings,
    consumer: String,
    audit: AuditLink,
    notifier: Notifier,
    stopping: Rc<Cell<bool>>,
    workers: Vec<Rc<Worker>>,
}

impl SourceSupervisor {
    /// A supervisor for `source`, consuming as `consumer` (the replica id).
    pub fn new(
        source: Arc<Source>,
        budget: Budget,
        redis: RedisSettings,
        settings: DeliverySettings,
        consumer: String,
        audit: AuditLink,
        notifier: Notifier,
    ) -> Self {
        SourceSupervisor {
            source,
            budget,
            redis,
            settings,
            consumer,
            audit,
            notifier,
            stopping: Rc::new(Cell::new(false)),
            workers: Vec::new(),
        }
    }

    /// Runs a worker loop inside the actor; if it ever ends while not stopping (a panic),
    /// the actor stops and the Supervisor restarts it with fresh loops.
    fn supervise(
        &self,
        ctx: &mut Context<Self>,
        what: &'static str,
        work: impl std::future::Future<Output = ()> + 'static,
    ) {
        let name = self.source.config.name.clone();
        let guarded = AssertUnwindSafe(work).catch_unwind();
        ctx.spawn(guarded.into_actor(self).map(move |result, act, ctx| {
            if act.stopping.get() {
                return;
            }
            match result {
                Err(_) => log::error!("delivery {what} loop of source {name} panicked; restarting"),
                Ok(()) => log::error!("delivery {what} loop of source {name} ended; restarting"),
            }
            ctx.stop();
        }));
    }
}

/// The audit trail as a source supervisor sees it.
#[derive(Clone, Copy)]
pub struct AuditLink {
    /// Entries a partition holds for the audit trail at most (`audit.max_backlog`): the
    /// outcomes stream's bound, and the stream length past which entries the audit consumer
    /// has not read yet are trimmed anyway.
    pub max_backlog: u64,
}

impl Actor for SourceSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.stopping.set(false);
        // Built here so its connections are driven by this arbiter, the one that uses them.
        let mut redis = self.redis.clone();
        // A checked-out connection serves one command at a time: enough of them that settling
        // in-flight deliveries does not queue behind each other.
        let in_flight: usize = self
            .source
            .config
            .destinations
            .iter()
            .map(|d| d.max_in_flight)
            .sum();
        redis.pool_size = (in_flight as u32 / 4).clamp(4, 32);
        let pool = match queue::pool(&redis) {
            Ok(p) => p,
            Err(e) => {
                log::error!(
                    "delivery of source {}: bad Redis settings: {e}",
                    self.source.config.name
                );
                return;
            }
        };
        self.workers = (0..self.source.config.destinations.len())
            .map(|i| {
                Rc::new(Worker::new(
                    self.source.clone(),
                    i,
                    self.consumer.clone(),
                    pool.clone(),
                    self.settings.clone(),
                    self.stopping.clone(),
                    self.audit.max_backlog,
                    self.budget.clone(),
                    self.notifier.clone(),
                ))
            })
            .collect();
        self.supervise(
            ctx,
            "trimmer",
            trim_loop(
                self.source.clone(),
                pool.clone(),
                self.settings.clone(),
                self.audit.max_backlog,
                self.consumer.clone(),
                self.stopping.clone(),
            ),
        );
        for w in self.workers.clone() {
            self.supervise(ctx, "reader", w.clone().run_reader());
            self.supervise(ctx, "promoter", w.clone().run_promoter());
            if w.is_ordered() {
                self.supervise(ctx, "sequencer", w.clone().run_sequencer());
            }
            self.supervise(ctx, "claimer", w.run_claimer());
        }
        log::info!(
            "delivery of source {} started: {} destination(s), consumer {}",
            self.source.config.name,
            self.workers.len(),
            self.consumer
        );
    }
}

impl Supervised for SourceSupervisor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.workers.clear();
    }
}

impl Handler<Shutdown> for SourceSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping.set(true);
        let workers = self.workers.clone();
        for w in &workers {
            w.wake();
        }
        let grace = Duration::from_secs(self.settings.shutdown_grace_seconds);
        let name = self.source.config.name.clone();
        let drained = async move {
            let all = futures_util::future::join_all(workers.iter().map(|w| w.idle()));
            if actix_web::rt::time::timeout(grace, all).await.is_err() {
                log::warn!("delivery of source {name}: in-flight deliveries outlived the grace period; they stay pending for other replicas");
            }
        };
        Box::pin(drained.into_actor(self))
    }
}
