//! The partitions an audit consumer follows, and its hold on each one's audit lease (see
//! `queue::audit_cursor`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use uuid::Uuid;

use super::batch::ReadEvent;
use crate::queue::{self, EntryId, RedisPool};
use crate::source::SourceKeys;
use crate::sources::Sources;

/// How long a stopping replica waits for its consumer to give its leases up itself.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

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
    /// Whether nobody held the lease at the last check either (see [`lease_step`]).
    pub seen_free: bool,
    /// When this consumer last gave the lease up to a writer that joined.
    pub yielded_at: Option<Instant>,
}

impl Lane {
    pub fn held(&self) -> bool {
        matches!(self.hold, Hold::Held(_))
    }

    /// Reads again from the cursor (after a failed write).
    pub fn rewind(&mut self) {
        (self.events_from, self.outcomes_from) = self.committed;
    }

    /// The lease is (newly) this replica's, with the cursor as Redis has it: reading starts
    /// there.
    pub fn take(&mut self, events: EntryId, outcomes: EntryId) {
        self.hold = Hold::Held(Instant::now());
        self.committed = (events, outcomes);
        self.rewind();
    }

    /// The lease is not (or no longer) this replica's: what was read under it and not
    /// written is dropped, and reading would start again from the cursor. Lane `index`'s
    /// events are taken out of `held`.
    pub fn lose(&mut self, index: usize, held: &mut Vec<ReadEvent>) {
        held.retain(|e| e.lane != index);
        self.rewind();
        self.hold = Hold::Elsewhere(Some(Instant::now()));
        self.seen_free = false;
    }

    /// Whether the lease is due to be renewed, or looked at again.
    pub fn check_due(&self, every: Duration) -> bool {
        match self.hold {
            Hold::Held(at) | Hold::Elsewhere(Some(at)) => at.elapsed() >= every,
            Hold::Elsewhere(None) => true,
        }
    }
}

/// How long after its `failed`-th write failure in a row a consumer probes PostgreSQL again:
/// a third of a lease's life, doubling with each failure, at most five minutes.
pub(super) fn probe_delay(lease_ms: u64, failed: u32) -> Duration {
    let third = Duration::from_millis(lease_ms / 3);
    let doubled = third.saturating_mul(1 << failed.saturating_sub(1).min(16));
    doubled.min(Duration::from_secs(300))
}

/// How many of `lanes` partitions one of `writers` consumers able to write takes: an even
/// share, so that every replica's consumer takes part of the work (a replica alone takes
/// them all; one that joins gets its share as the others give the excess up).
pub(super) fn fair_share(lanes: usize, writers: usize) -> usize {
    lanes.div_ceil(writers.max(1))
}

/// Where a consumer stands among the writers, from one check of its leases to the next.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Standing {
    /// Whether it can write: PostgreSQL answered its probe, or its last write succeeded. Until
    /// then (at start, and after a failed write gave its leases up) it takes no lease and
    /// does not report itself as a writer, so that replicas that can write take them.
    pub writes_ok: bool,
    /// Writes failed in a row: each failure waits longer before PostgreSQL is probed again,
    /// so that a replica whose probe passes and whose writes fail (a read-only server, a
    /// schema it does not know) does not take partitions back from the others forever.
    pub failed_writes: u32,
    /// Not probed before then.
    pub probe_after: Option<Instant>,
    /// The writers it counted at the last check.
    pub writers: usize,
    /// How many leases it still has to give up to writers that joined (see [`to_give`]).
    pub to_give: usize,
    /// Whether it left the writers (stopping).
    pub left: bool,
}

/// Where a consumer stands among the writers, at one check of its leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sharing {
    /// Its fair share of the partitions.
    pub share: usize,
    /// How many leases it holds now.
    pub ours: usize,
    /// How many it still has to give up because writers joined.
    pub to_give: usize,
    /// Whether it takes none (it cannot write).
    pub standing_by: bool,
}

/// What to do with one partition's lease at its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseStep {
    /// Keep it.
    Renew,
    /// Give it up to a writer that joined.
    GiveUp,
    /// Take it if it is free.
    Take,
    /// Only look whether it is free (past the share, it is taken once seen free twice: no
    /// partition stays unwritten because the others count a writer that cannot write).
    Peek,
    /// Nothing.
    Leave,
}

/// The step for one partition: `held` by this consumer, `seen_free` at the last check, or
/// `yielded` by it to a writer that joined less than a lease's life ago (not taken back past
/// the share: the joiner takes it).
pub(super) fn lease_step(held: bool, seen_free: bool, yielded: bool, s: Sharing) -> LeaseStep {
    match held {
        true if s.to_give > 0 && s.ours > s.share => LeaseStep::GiveUp,
        true => LeaseStep::Renew,
        false if s.standing_by => LeaseStep::Leave,
        false if s.ours < s.share => LeaseStep::Take,
        false if yielded => LeaseStep::Leave,
        false if seen_free => LeaseStep::Take,
        false => LeaseStep::Peek,
    }
}

/// How many leases to give up when the writers went from `before` to `now`: the excess over
/// the new share when writers joined; none when they left (the share only grows then).
pub(super) fn to_give(before: usize, now: usize, ours: usize, share: usize, left: usize) -> usize {
    match now.cmp(&before) {
        std::cmp::Ordering::Greater => ours.saturating_sub(share),
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Equal => left,
    }
}

/// The audit leases of one replica: their token, and the way to give them up at shutdown.
#[derive(Clone)]
pub struct AuditLeases {
    /// Unique per process: a replica restarted under the same id does not inherit leases
    /// whose batches it never read.
    pub(super) token: String,
    pub(super) stopping: Arc<AtomicBool>,
    /// Told by the consumer once it gave every lease up after `stopping`.
    pub(super) released: Arc<Notify>,
    redis: RedisPool,
    sources: Sources,
    /// The Redis key prefix (the writers' registry).
    pub(super) key_prefix: String,
}

impl AuditLeases {
    /// The leases replica `replica` will hold, under Redis key prefix `key_prefix` (where the
    /// writers' registry is).
    pub fn new(replica: &str, key_prefix: &str, redis: RedisPool, sources: Sources) -> Self {
        AuditLeases {
            token: format!("{replica}:{}", Uuid::now_v7().simple()),
            stopping: Arc::default(),
            released: Arc::default(),
            redis,
            sources,
            key_prefix: key_prefix.to_string(),
        }
    }

    /// Whether the replica is stopping (no lease is taken or kept any more).
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Stops taking leases and gives up those held, so that another replica writes their
    /// partitions at once rather than after `audit.claim_idle_ms`. What was read and not
    /// written is read again by the next holder. The consumer gives them up itself (it
    /// knows every partition it holds, those of removed sources too); if it does not answer
    /// in time (a write in progress), they are given up from here.
    pub async fn release(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let told = actix_web::rt::time::timeout(RELEASE_WAIT, self.released.notified()).await;
        if told.is_ok() {
            return;
        }
        let Ok(mut conn) = queue::connection(&self.redis).await else {
            return; // Redis away: the leases run out by themselves.
        };
        for source in self.sources.iter() {
            for keys in source.lanes() {
                if let Err(e) = queue::audit_unlease(&mut *conn, keys, &self.token).await {
                    log::warn!("audit: {}: the lease was not given up: {e}", keys.stream);
                }
            }
        }
        if let Err(e) = queue::audit_writer_leave(&mut *conn, &self.key_prefix, &self.token).await {
            log::debug!("audit: still counted as a writer: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_write_failure_in_a_row_doubles_the_wait_before_the_next_probe() {
        assert_eq!(probe_delay(9_000, 1), Duration::from_secs(3));
        assert_eq!(probe_delay(9_000, 2), Duration::from_secs(6));
        assert_eq!(probe_delay(9_000, 4), Duration::from_secs(24));
        assert_eq!(
            probe_delay(9_000, 40),
            Duration::from_secs(300),
            "at most five minutes"
        );
    }

    #[test]
    fn each_live_replica_writes_an_even_share_of_the_partitions() {
        assert_eq!(fair_share(6, 1), 6);
        assert_eq!(fair_share(6, 3), 2);
        assert_eq!(
            fair_share(7, 3),
            3,
            "rounded up: no partition without a writer"
        );
        assert_eq!(fair_share(2, 5), 1);
        assert_eq!(
            fair_share(4, 0),
            4,
            "none reported yet: this replica takes them all"
        );
    }

    fn sharing(share: usize, ours: usize, to_give: usize, standing_by: bool) -> Sharing {
        Sharing {
            share,
            ours,
            to_give,
            standing_by,
        }
    }

    #[test]
    fn a_held_lease_is_given_up_only_to_writers_that_joined() {
        let s = sharing(1, 2, 1, false);
        assert_eq!(lease_step(true, false, false, s), LeaseStep::GiveUp);
        assert_eq!(
            lease_step(true, false, false, sharing(1, 2, 0, false)),
            LeaseStep::Renew,
            "past the share without a writer joining: a partition taken because it was free"
        );
        assert_eq!(
            lease_step(true, false, false, sharing(2, 2, 1, false)),
            LeaseStep::Renew
        );
    }

    #[test]
    fn a_free_lease_is_taken_up_to_the_share_and_past_it_once_seen_free_twice() {
        assert_eq!(
            lease_step(false, false, false, sharing(2, 1, 0, false)),
            LeaseStep::Take
        );
        assert_eq!(
            lease_step(false, false, false, sharing(1, 1, 0, false)),
            LeaseStep::Peek
        );
        assert_eq!(
            lease_step(false, true, false, sharing(1, 1, 0, false)),
            LeaseStep::Take
        );
        assert_eq!(
            lease_step(false, true, false, sharing(2, 0, 0, true)),
            LeaseStep::Leave,
            "it cannot write"
        );
        assert_eq!(
            lease_step(false, true, true, sharing(1, 1, 0, false)),
            LeaseStep::Leave,
            "given up to a joiner a moment ago: not taken back past the share"
        );
        assert_eq!(
            lease_step(false, false, true, sharing(2, 1, 0, false)),
            LeaseStep::Take,
            "within the share it is taken whatever"
        );
    }

    #[test]
    fn writers_joining_make_the_excess_go_and_writers_leaving_make_none() {
        // Alone with four partitions; a second writer joins: two go.
        assert_eq!(to_give(1, 2, 4, 2, 0), 2);
        // Nothing changed: what is left to give stays.
        assert_eq!(to_give(2, 2, 3, 2, 1), 1);
        // A writer left: the share grows, nothing goes.
        assert_eq!(to_give(3, 2, 2, 2, 1), 0);
        // Already within the share.
        assert_eq!(to_give(1, 2, 1, 2, 0), 0);
    }
}
