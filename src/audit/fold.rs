//! Folding a batch's delivery attempts into the new event rows of the same batch, so that
//! most events are written once with their outcome instead of inserted and then updated.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::row::NewEventRow;
use crate::event::AttemptRecord;

/// Writes the outcome of single-destination events whose attempts are in the same batch
/// straight into their new rows (under load, nearly all), and returns the events whose
/// status must be rolled up from `deliveries` instead: attempts of events written earlier,
/// events with several destinations, and new events whose attempts may have been written
/// in an earlier batch. The result is sorted and without repeats.
pub(super) fn fold_outcomes(events: &mut [NewEventRow], attempts: &[AttemptRecord]) -> Vec<Uuid> {
    let mut latest: HashMap<Uuid, &AttemptRecord> = HashMap::new();
    for a in attempts {
        let slot = latest.entry(a.event_id).or_insert(a);
        if a.attempt >= slot.attempt {
            *slot = a;
        }
    }
    let mut folded = HashSet::new();
    let mut roll_up = Vec::new();
    for e in events.iter_mut() {
        match latest.get(&e.id) {
            Some(a) if e.destinations == 1 => {
                e.status = a.delivery_status.as_str();
                e.attempts = a.attempt;
                e.last_error.clone_from(&a.error);
                e.delivered_at = a.delivered_at();
                folded.insert(e.id);
            }
            _ => roll_up.push(e.id),
        }
    }
    roll_up.extend(latest.keys().filter(|id| !folded.contains(*id)));
    roll_up.sort_unstable();
    roll_up.dedup();
    roll_up
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::audit::fixtures::{self, new_event_row as event};
    use crate::status::Status;

    fn attempt(event: Uuid, n: i32, status: Status) -> AttemptRecord {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(n.into());
        fixtures::attempt(event, n, status, at)
    }
    #[test]
    fn a_single_destination_event_takes_its_latest_attempt_whatever_the_order() {
        let mut events = vec![event(1)];
        let id = events[0].id;
        let attempts = [
            attempt(id, 2, Status::Delivered),
            attempt(id, 1, Status::Retrying),
        ];
        let roll_up = fold_outcomes(&mut events, &attempts);
        assert!(roll_up.is_empty(), "{roll_up:?}");
        let row = &events[0];
        assert_eq!(row.status, Status::Delivered.as_str());
        assert_eq!(row.attempts, 2);
        assert_eq!(row.last_error, None);
        assert_eq!(row.delivered_at, Some(attempts[0].attempted_at));
    }

    #[test]
    fn a_failed_latest_attempt_keeps_its_error_and_no_delivery_time() {
        let mut events = vec![event(1)];
        let id = events[0].id;
        let roll_up = fold_outcomes(&mut events, &[attempt(id, 3, Status::Dead)]);
        assert!(roll_up.is_empty());
        assert_eq!(events[0].status, Status::Dead.as_str());
        assert_eq!(events[0].attempts, 3);
        assert_eq!(events[0].last_error.as_deref(), Some("503 on attempt 3"));
        assert_eq!(events[0].delivered_at, None);
    }

    #[test]
    fn several_destinations_are_rolled_up_not_folded() {
        let mut events = vec![event(2)];
        let id = events[0].id;
        let roll_up = fold_outcomes(&mut events, &[attempt(id, 1, Status::Delivered)]);
        assert_eq!(roll_up, vec![id]);
        assert_eq!(events[0].status, Status::Queued.as_str());
        assert_eq!(events[0].attempts, 0);
    }

    #[test]
    fn new_events_without_attempts_and_attempts_of_older_events_are_rolled_up_once() {
        let mut events = vec![event(1), event(1)];
        let (quiet, done) = (events[0].id, events[1].id);
        let older = Uuid::now_v7();
        let attempts = [
            attempt(done, 1, Status::Delivered),
            attempt(older, 1, Status::Retrying),
            attempt(older, 2, Status::Retrying),
        ];
        let roll_up = fold_outcomes(&mut events, &attempts);
        let mut expected = vec![quiet, older];
        expected.sort_unstable();
        assert_eq!(roll_up, expected);
        assert_eq!(events[0].status, Status::Queued.as_str());
        assert_eq!(events[1].status, Status::Delivered.as_str());
    }

    #[test]
    fn nothing_to_fold_is_nothing_to_roll_up() {
        assert!(fold_outcomes(&mut [], &[]).is_empty());
    }
}
