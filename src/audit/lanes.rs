//! The partitions an audit consumer follows, and its hold on each one's audit lease (see
//! `queue::audit_cursor`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::queue::{self, EntryId, RedisPool};
use crate::source::SourceKeys;
use crate::sources::Sources;

/// This replica's hold on a partition's audit lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Another replica's (or nobody's yet), as of this check (None: never checked).
    Elsewhere(Option<Instant>),
    /// This replica's, renewed then.
    Held(Instant),
}

/// One partition as the consumer reads it.
pub(super) struct Lane {
    pub keys: SourceKeys,
    /// The source the partition belongs to.
    pub source: String,
    pub hold: Hold,
    /// The next event and outcome to read: ahead of the cursor while a batch is written.
    pub events_from: EntryId,
    pub outcomes_from: EntryId,
    /// Where the cursor stands in Redis, as this replica last took or moved it.
    pub committed: (EntryId, EntryId),
}

impl Lane {
    pub fn held(&self) -> bool {
        matches!(self.hold, Hold::Held(_))
    }

    /// Reads again from the cursor (after a failed write).
    pub fn rewind(&mut self) {
        (self.events_from, self.outcomes_from) = self.committed;
    }

    /// Whether the lease is due to be renewed, or looked at again.
    pub fn check_due(&self, every: Duration) -> bool {
        match self.hold {
            Hold::Held(at) | Hold::Elsewhere(Some(at)) => at.elapsed() >= every,
            Hold::Elsewhere(None) => true,
        }
    }
}

/// The audit leases of one replica: their token, and the way to give them up at shutdown.
#[derive(Clone)]
pub struct AuditLeases {
    /// Unique per process: a replica restarted under the same id does not inherit leases
    /// whose batches it never read.
    pub(super) token: String,
    pub(super) stopping: Arc<AtomicBool>,
    redis: RedisPool,
    sources: Sources,
}

impl AuditLeases {
    /// The leases replica `replica` will hold.
    pub fn new(replica: &str, redis: RedisPool, sources: Sources) -> Self {
        AuditLeases {
            token: format!("{replica}:{}", Uuid::now_v7().simple()),
            stopping: Arc::default(),
            redis,
            sources,
        }
    }

    /// Stops taking leases and gives up those held, so that another replica writes their
    /// partitions at once rather than after `audit.claim_idle_ms`. What was read and not
    /// written is read again by the next holder.
    pub async fn release(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let Ok(mut conn) = queue::connection(&self.redis).await else {
            return; // Redis away: the leases run out by themselves.
        };
        for source in self.sources.iter() {
            for keys in source.lanes() {
                if let Err(e) = queue::audit_unlease(&mut *conn, keys, &self.token).await {
                    log::warn!("audit: {}: the lease was not given up: {e}", keys.stream);
                    return;
                }
            }
        }
    }
}
