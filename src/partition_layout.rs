//! How many partitions each source's events are routed to, agreed by every replica through a
//! record in Redis, so that changing `partitions` loses and doubles nothing.
//!
//! A key's de-duplication lives in the partition its hash picks, so a new count would send a
//! sender's resend of an accepted webhook to another partition, where it is not known. A
//! change therefore takes effect one de-duplication window (`dedup_ttl_seconds`) after the
//! first replica with the new setting starts: until then every replica, old setting or new,
//! routes with the count in force before, and the keys of that window all stay where their
//! first copies are. Delivery reads every partition ever routed to (`lanes`), so the
//! partitions a lowered count no longer uses drain.

use crate::config::MAX_PARTITIONS;

/// A source's record: `HGETALL {prefix}:{source}:layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The count configured by the latest replica that started with a new one.
    pub partitions: u16,
    /// The count in force before that change.
    pub previous: u16,
    /// Until when (ms) `previous` stays in force.
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

    /// The count webhooks are routed with at `now_ms`.
    pub fn routing(&self, now_ms: u64) -> u16 {
        if now_ms < self.until_ms {
            self.previous
        } else {
            self.partitions
        }
        .clamp(1, MAX_PARTITIONS)
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
        let in_force = current.routing(now_ms);
        Layout {
            partitions: configured,
            previous: in_force,
            until_ms: if in_force == configured {
                0
            } else {
                now_ms + window_ms
            },
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
        assert_eq!(fresh.routing(1_000), 4);
    }

    #[test]
    fn a_new_count_waits_one_window_and_delivery_reads_both() {
        let l = Layout::agree(Some(Layout::configured(1)), true, 6, 1_000, HOUR);
        assert_eq!(l.routing(1_000), 1, "the old count stays in force");
        assert_eq!(l.routing(1_000 + HOUR - 1), 1);
        assert_eq!(l.routing(1_000 + HOUR), 6, "then the new one");
        assert_eq!(l.lanes(), 6);
        // Another replica with the new setting starting later changes nothing.
        assert_eq!(Layout::agree(Some(l), true, 6, 5_000, HOUR), l);
        // Lowering it again keeps reading every partition ever used.
        let later = Layout::agree(Some(l), true, 2, 1_000 + 2 * HOUR, HOUR);
        assert_eq!(later.routing(1_000 + 2 * HOUR), 6);
        assert_eq!(later.routing(1_000 + 3 * HOUR), 2);
        assert_eq!(later.lanes(), 6);
    }

    #[test]
    fn changing_back_within_the_window_keeps_the_count_in_force() {
        let up = Layout::agree(Some(Layout::configured(1)), true, 6, 0, HOUR);
        let back = Layout::agree(Some(up), true, 1, HOUR / 2, HOUR);
        // 6 never took effect: 1 stays in force, with no new window.
        assert_eq!(back.routing(HOUR / 2), 1);
        assert_eq!(back.until_ms, 0);
        assert_eq!(back.lanes(), 6);
    }

    #[test]
    fn a_first_start_with_several_partitions_waits_for_the_old_single_stream() {
        let l = Layout::agree(None, true, 3, 0, HOUR);
        assert_eq!(l.routing(0), 1);
        assert_eq!(l.routing(HOUR), 3);
    }
}
