//! The process-wide delivery budget shared by every source's workers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The process-wide delivery budget as one source sees it: the shared in-flight count and
/// the part of the total this source may fill. Sources of the highest priority may fill all
/// of it; lower ones leave the rest to them, so a busy low-priority source cannot starve a
/// high-priority one.
#[derive(Clone)]
pub struct Budget {
    /// Deliveries in flight in the whole process, every source's.
    pub in_flight: Arc<AtomicUsize>,
    /// How many of them this source may have started.
    pub limit: usize,
}

impl Budget {
    /// The budget of a source of `priority` when the highest configured is `highest`.
    pub fn new(in_flight: Arc<AtomicUsize>, total: usize, priority: u8, highest: u8) -> Self {
        let limit = total * (priority as usize + 1) / (highest as usize + 1);
        Budget {
            in_flight,
            limit: limit.max(1),
        }
    }

    /// How many more deliveries this source may start now.
    pub fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.in_flight.load(Ordering::Relaxed))
    }

    /// Counts a delivery started; it counts until the share is dropped, however its task
    /// ends (finished, panicked, or dropped with its thread when a supervisor stops).
    pub fn take(&self) -> Share {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Share(self.in_flight.clone())
    }
}

/// One delivery's share of the process budget, given back when dropped.
pub struct Share(Arc<AtomicUsize>);

impl Drop for Share {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_priority_leaves_room_to_the_highest() {
        let shared = Arc::new(AtomicUsize::new(0));
        let high = Budget::new(shared.clone(), 100, 3, 3);
        let low = Budget::new(shared.clone(), 100, 0, 3);
        assert_eq!((high.limit, low.limit), (100, 25));
        let mut shares: Vec<Share> = (0..25).map(|_| low.take()).collect();
        assert_eq!((high.room(), low.room()), (75, 0));
        shares.pop();
        assert_eq!(low.room(), 1);
        drop(shares);
        assert_eq!(low.room(), 25, "dropped shares are given back");
    }

    #[test]
    fn every_source_may_start_at_least_one() {
        let b = Budget::new(Arc::new(AtomicUsize::new(0)), 1, 0, 9);
        assert_eq!(b.limit, 1);
    }
}
