//! What the audit consumer has read and not written yet, and when an event waits for its
//! outcome before it is written.

use std::time::{Duration, Instant};

use super::row::NewEventRow;
use crate::event::AttemptRecord;
use crate::queue::EntryId;

/// An event read from a source stream, not written yet.
pub(super) struct ReadEvent {
    /// The index of its partition in the consumer's list.
    pub lane: usize,
    pub entry: EntryId,
    pub row: NewEventRow,
    /// When it was first read (it may be held for its outcome).
    pub since: Instant,
}

/// Entries read and not yet written.
#[derive(Default)]
pub(super) struct Batch {
    pub events: Vec<ReadEvent>,
    pub attempts: Vec<AttemptRecord>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.attempts.is_empty()
    }
}

/// Whether to keep an event back for a round rather than write it now: a single-destination
/// event whose outcome is not in this batch yet, for at most `hold`. Written with its
/// outcome it is one row insert; written before it, an insert and then an update.
pub(super) fn hold_back(
    destinations: i32,
    has_outcome: bool,
    waited: Duration,
    hold: Duration,
) -> bool {
    destinations == 1 && !has_outcome && waited < hold
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(300);

    #[test]
    fn a_single_destination_event_waits_a_little_for_its_outcome() {
        assert!(hold_back(1, false, Duration::ZERO, HOLD));
        assert!(!hold_back(1, false, HOLD, HOLD), "not longer than the hold");
        assert!(
            !hold_back(1, true, Duration::ZERO, HOLD),
            "its outcome is here"
        );
    }

    #[test]
    fn an_event_of_several_destinations_is_rolled_up_anyway_so_it_does_not_wait() {
        assert!(!hold_back(2, false, Duration::ZERO, HOLD));
        assert!(!hold_back(0, false, Duration::ZERO, HOLD));
    }
}
