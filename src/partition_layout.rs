//! How many partitions each source's events are routed to, agreed by every replica through a
//! record in Redis, so that changing `partitions` loses and doubles nothing.
//!
//! A key's de-duplication lives in the partition its hash picks, so after a change of count a
//! sender's resend of an accepted webhook would be routed to a partition where it is not
//! known. A change takes effect at once, and for one de-duplication window
//! (`dedup_ttl_seconds`) after it the partition the previous count picks is asked first
//! whether it has the key. Delivery reads every partition ever routed to (`lanes`), so the
//! partitions a lowered count no longer uses drain.

use crate::config::MAX_PARTITIONS;

/// A source's record: `HGETALL {prefix}:{source}:layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The count webhooks are routed with: the latest replica's setting that differed.
    pub partitions: u16,
    /// The count before that change.
    pub previous: u16,
    /// Until when (ms) the previous count's partitions are asked for keys (one window).
    pub until_ms: u64,
    /// Every partition ever routed to: what delivery reads.
    pub lanes: u16,
}

impl Layout {
    /// The record as `HGETALL` returns it; `None` when a field is missing.
    pub fn from_fields(fields: &std::collections::HashMap<String, u64>) -> Option<Layout> {
        let small = |name: &str| fields.get(name).and_then(|v| u16::try_from(*v).ok());
        Some(Layout {
            partitions: small("partitions")?,
            previous: small("previous")?,
            until_ms: *fields.get("until")?,
            lanes: small("lanes")?,
        })
    }

    /// The layout of a source whose record cannot be read: its own setting, at once.
    pub fn configured(partitions: u16) -> Layout {
        Layout {
            partitions,
            previous: partitions,
            until_ms: 0,
            lanes: partitions,
        }
    }

    /// The count webhooks are routed with.
    pub fn routing(&self) -> u16 {
        self.partitions.clamp(1, MAX_PARTITIONS)
    }

    /// The previous count, while its partitions may still hold keys of the last window.
    pub fn previous_at(&self, now_ms: u64) -> Option<u16> {
        (now_ms < self.until_ms && self.previous != self.partitions)
            .then(|| self.previous.clamp(1, MAX_PARTITIONS))
    }

    /// The partitions delivery reads.
    pub fn lanes(&self) -> u16 {
        self.lanes
            .max(self.partitions)
            .max(self.previous)
            .clamp(1, MAX_PARTITIONS)
    }

    /// The record after a replica configured with `configured` partitions starts at `now_ms`,
    /// with a de-duplication window of `window_ms`. `None` is no record yet: a source that
    /// has a stream already had one partition (as every source before partitions existed);
    /// a new one takes its setting at once.
    pub fn agree(
        current: Option<Layout>,
        has_stream: bool,
        configured: u16,
        now_ms: u64,
        window_ms: u64,
    ) -> Layout {
        let first = if has_stream { 1 } else { configured };
        let current = current.unwrap_or(Layout::configured(first));
        if current.partitions == configured {
            return current;
        }
        Layout {
            partitions: configured,
            previous: current.partitions,
            until_ms: now_ms + window_ms,
            lanes: current.lanes().max(configured),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    #[test]
    fn a_first_start_takes_the_setting_at_once_for_a_new_source() {
        let l = Layout::agree(None, true, 1, 1_000, HOUR);
        assert_eq!(l, Layout::configured(1));
        let fresh = Layout::agree(None, false, 4, 1_000, HOUR);
        assert_eq!(fresh, Layout::configured(4));
        assert_eq!(fresh.previous_at(1_000), None);
    }

    #[test]
    fn a_new_count_routes_at_once_and_asks_the_old_partitions_for_one_window() {
        let l = Layout::agree(Some(Layout::configured(1)), true, 6, 1_000, HOUR);
        assert_eq!(l.routing(), 6);
        assert_eq!(l.previous_at(1_000), Some(1));
        assert_eq!(l.previous_at(1_000 + HOUR - 1), Some(1));
        assert_eq!(l.previous_at(1_000 + HOUR), None, "the window is over");
        assert_eq!(l.lanes(), 6);
        // Another replica with the new setting starting later changes nothing.
        assert_eq!(Layout::agree(Some(l), true, 6, 5_000, HOUR), l);
        // Lowering it again keeps reading every partition ever used.
        let later = Layout::agree(Some(l), true, 2, 1_000 + 2 * HOUR, HOUR);
        assert_eq!(later.routing(), 2);
        assert_eq!(later.previous_at(1_000 + 2 * HOUR), Some(6));
        assert_eq!(later.lanes(), 6);
    }

    #[test]
    fn changing_back_within_the_window_asks_the_partitions_just_used() {
        let up = Layout::agree(Some(Layout::configured(1)), true, 6, 0, HOUR);
        let back = Layout::agree(Some(up), true, 1, HOUR / 2, HOUR);
        assert_eq!(back.routing(), 1);
        assert_eq!(back.previous_at(HOUR / 2), Some(6));
        assert_eq!(back.lanes(), 6);
    }

    #[test]
    fn a_first_start_with_several_partitions_asks_the_old_single_stream() {
        let l = Layout::agree(None, true, 3, 0, HOUR);
        assert_eq!(l.routing(), 3);
        assert_eq!(l.previous_at(0), Some(1));
    }
}
