//! What an attempt's verdict means for the delivery: delivered, retry at a time, or dead.
//! Pure functions of the verdict, the attempt number and the policy, so they are tested
//! without Redis or HTTP.

use super::http::Verdict;
use crate::config::RetryPolicy;
use crate::retry;
use crate::status::Status;

/// What to do with a delivery after an attempt (or instead of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledge and count it delivered.
    Delivered,
    /// Park until `due_ms`; the next read is attempt `attempt`.
    Retry { due_ms: u64, attempt: u32 },
    /// Move it to the dead-letter stream.
    Dead { reason: String },
    /// Not wanted by the destination: acknowledge without an attempt.
    Filtered,
}

impl Outcome {
    /// The delivery's status after this outcome.
    pub fn status(&self) -> Status {
        match self {
            Outcome::Delivered => Status::Delivered,
            Outcome::Retry { .. } => Status::Retrying,
            Outcome::Dead { .. } => Status::Dead,
            Outcome::Filtered => Status::Filtered,
        }
    }

    /// The error the audit trail records for the attempt that led here, if any.
    pub fn error(&self, verdict: &Verdict) -> Option<String> {
        match (self, verdict) {
            (Outcome::Dead { reason }, _) => Some(reason.clone()),
            (Outcome::Filtered, _) => None,
            (_, Verdict::Delivered) => None,
            (_, Verdict::Retry { reason, .. } | Verdict::Permanent { reason }) => {
                Some(reason.clone())
            }
        }
    }
}

/// Decides the outcome of attempt `attempt` (1-based) that ended in `verdict`, at `now_ms`.
/// A retry waits the policy's backoff (jittered by `random`, called only for a retry) or the
/// destination's `Retry-After`, whichever is longer; past `max_attempts` it is dead.
pub fn decide(
    verdict: &Verdict,
    attempt: u32,
    policy: &RetryPolicy,
    now_ms: u64,
    random: impl FnOnce() -> u64,
) -> Outcome {
    match verdict {
        Verdict::Delivered => Outcome::Delivered,
        Verdict::Permanent { reason } => Outcome::Dead {
            reason: reason.clone(),
        },
        Verdict::Retry { reason, .. } if attempt >= policy.max_attempts => Outcome::Dead {
            reason: format!("gave up after {attempt} attempts: {reason}"),
        },
        Verdict::Retry { after, .. } => {
            let wait = retry::backoff(policy, attempt, random()).max(after.unwrap_or_default());
            Outcome::Retry {
                due_ms: now_ms + wait.as_millis() as u64,
                attempt: attempt + 1,
            }
        }
    }
}

/// What the verdict tells the circuit breaker: `Some(true)` the destination is up (even a
/// permanent 4xx is an answer), `Some(false)` a failure that counts toward opening it, None
/// nothing (a 429: the destination is up and asked us to slow down).
pub fn circuit_success(verdict: &Verdict) -> Option<bool> {
    match verdict {
        Verdict::Delivered | Verdict::Permanent { .. } => Some(true),
        Verdict::Retry { trips_circuit, .. } => trips_circuit.then_some(false),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW: u64 = 1_795_000_000_000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay_ms: 1000,
            max_delay_ms: 10_000,
        }
    }

    fn retry(after: Option<Duration>) -> Verdict {
        Verdict::Retry {
            reason: "503 Service Unavailable".into(),
            after,
            trips_circuit: true,
        }
    }

    fn no_random() -> u64 {
        panic!("jitter is drawn only for a retry")
    }

    #[test]
    fn a_2xx_is_delivered() {
        let outcome = decide(&Verdict::Delivered, 1, &policy(), NOW, no_random);
        assert_eq!(outcome, Outcome::Delivered);
        assert_eq!(outcome.status(), Status::Delivered);
        assert_eq!(outcome.error(&Verdict::Delivered), None);
    }

    #[test]
    fn a_permanent_failure_is_dead_at_once_with_its_reason() {
        let gone = Verdict::Permanent {
            reason: "410 gone".into(),
        };
        let outcome = decide(&gone, 1, &policy(), NOW, no_random);
        assert_eq!(
            outcome,
            Outcome::Dead {
                reason: "410 gone".into()
            }
        );
        assert_eq!(outcome.status(), Status::Dead);
        assert_eq!(outcome.error(&gone).as_deref(), Some("410 gone"));
    }

    #[test]
    fn a_retry_is_scheduled_after_the_backoff_for_the_next_attempt() {
        // Attempt 2 failed: the step is 2 s, jittered between 1 and 2 s.
        let outcome = decide(&retry(None), 2, &policy(), NOW, || 0);
        assert_eq!(
            outcome,
            Outcome::Retry {
                due_ms: NOW + 1000,
                attempt: 3
            }
        );
        assert_eq!(outcome.status(), Status::Retrying);
        let outcome = decide(&retry(None), 2, &policy(), NOW, || 1000);
        assert_eq!(
            outcome,
            Outcome::Retry {
                due_ms: NOW + 2000,
                attempt: 3
            }
        );
        assert_eq!(
            outcome.error(&retry(None)).as_deref(),
            Some("503 Service Unavailable")
        );
    }

    #[test]
    fn retry_after_wins_when_longer_than_the_backoff() {
        let later = retry(Some(Duration::from_secs(30)));
        let outcome = decide(&later, 1, &policy(), NOW, || 0);
        assert_eq!(
            outcome,
            Outcome::Retry {
                due_ms: NOW + 30_000,
                attempt: 2
            }
        );
        let sooner = retry(Some(Duration::from_millis(10)));
        let outcome = decide(&sooner, 1, &policy(), NOW, || 0);
        assert_eq!(
            outcome,
            Outcome::Retry {
                due_ms: NOW + 1000,
                attempt: 2
            }
        );
    }

    #[test]
    fn the_last_attempt_gives_up() {
        let outcome = decide(&retry(None), 3, &policy(), NOW, no_random);
        let reason = "gave up after 3 attempts: 503 Service Unavailable";
        assert_eq!(
            outcome,
            Outcome::Dead {
                reason: reason.into()
            }
        );
        assert_eq!(outcome.error(&retry(None)).as_deref(), Some(reason));
    }

    #[test]
    fn only_failures_that_trip_it_count_against_the_circuit() {
        assert_eq!(circuit_success(&Verdict::Delivered), Some(true));
        let gone = Verdict::Permanent {
            reason: "404".into(),
        };
        assert_eq!(circuit_success(&gone), Some(true));
        assert_eq!(circuit_success(&retry(None)), Some(false));
        let slow_down = Verdict::Retry {
            reason: "429 too many requests".into(),
            after: None,
            trips_circuit: false,
        };
        assert_eq!(circuit_success(&slow_down), None);
    }
}
