//! The delivery supervisors of a process: one per source with destinations, each on a thread
//! of its own. Started at start-up; when the configuration is reloaded, the supervisors of
//! sources removed or changed finish their deliveries in flight and stop, and new ones start.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Arbiter};

use super::budget::Budget;
use super::supervisor::{AuditLink, Shutdown, SourceSupervisor};
use crate::config::{DeliverySettings, RedisSettings, Settings};
use crate::notify::Notifier;
use crate::source::Source;

/// A running supervisor and its thread (None once an embedder took the thread).
struct Running {
    addr: Addr<SourceSupervisor>,
    arbiter: Option<Arbiter>,
}

/// Every delivery supervisor of the process, by source name.
pub struct Fleet {
    running: HashMap<String, Running>,
    /// Deliveries in flight in the whole process, every source's.
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    redis: RedisSettings,
    delivery: DeliverySettings,
    consumer: String,
    audit: AuditLink,
    /// The highest source priority of the configuration the budgets are shared by.
    highest: u8,
    notifier: Notifier,
    /// Stopped for good (shutdown): a reload then starts nothing.
    closed: bool,
}

impl Fleet {
    /// No supervisor yet: [`Fleet::start`] starts them.
    pub fn new(settings: &Settings, notifier: Notifier) -> Self {
        Fleet {
            running: HashMap::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: settings.delivery.max_in_flight,
            redis: settings.redis.clone(),
            delivery: settings.delivery.clone(),
            consumer: settings.server.replica_id.clone(),
            audit: AuditLink {
                max_backlog: settings.audit.max_backlog,
            },
            highest: highest_priority(settings),
            notifier,
            closed: false,
        }
    }

    /// Budgets from now on are shared as `settings`' priorities say.
    pub fn follow(&mut self, settings: &Settings) {
        self.highest = highest_priority(settings);
    }

    /// Starts delivering `source`, when delivery is on and it has destinations.
    pub fn start(&mut self, source: Arc<Source>) {
        if self.closed || !self.delivery.enabled || source.config.destinations.is_empty() {
            return;
        }
        let budget = Budget::new(
            self.in_flight.clone(),
            self.max_in_flight,
            source.config.priority,
            self.highest,
        );
        let name = source.config.name.clone();
        let (redis, delivery) = (self.redis.clone(), self.delivery.clone());
        let (consumer, audit) = (self.consumer.clone(), self.audit);
        let notifier = self.notifier.clone();
        let arbiter = Arbiter::new();
        let addr = actix::Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
            SourceSupervisor::new(source, budget, redis, delivery, consumer, audit, notifier)
        });
        self.running.insert(
            name,
            Running {
                addr,
                arbiter: Some(arbiter),
            },
        );
    }

    /// Stops the delivery of these sources: their deliveries in flight finish (within the
    /// grace period), the rest stays pending for whoever reads their streams next.
    pub async fn stop(&mut self, names: &[String]) {
        let stopping: Vec<Running> = names
            .iter()
            .filter_map(|n| self.running.remove(n))
            .collect();
        let grace = Duration::from_secs(self.delivery.shutdown_grace_seconds + 1);
        let stops = futures_util::future::join_all(stopping.iter().map(|r| r.addr.send(Shutdown)));
        if actix_web::rt::time::timeout(grace, stops).await.is_err() {
            log::warn!("delivery: shutdown grace period over");
        }
        for r in stopping {
            if let Some(arbiter) = r.arbiter {
                arbiter.stop();
            }
        }
    }

    /// Stops every supervisor (at shutdown).
    pub async fn stop_all(&mut self) {
        self.closed = true;
        let names: Vec<String> = self.running.keys().cloned().collect();
        self.stop(&names).await;
    }

    /// Takes the supervisors' threads, so that an embedder (the tests) can stop and join
    /// them: they outlive the actix System that started them.
    pub fn take_arbiters(&mut self) -> Vec<Arbiter> {
        self.running
            .values_mut()
            .filter_map(|r| r.arbiter.take())
            .collect()
    }
}

fn highest_priority(settings: &Settings) -> u8 {
    settings
        .sources
        .iter()
        .map(|s| s.priority)
        .max()
        .unwrap_or(0)
}
