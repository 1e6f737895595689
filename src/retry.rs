//! Retry timing: exponential backoff with jitter, and the `Retry-After` a destination asks for.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use actix_web::http::header::HttpDate;

use crate::config::RetryPolicy;

/// The delay before the attempt after `failed_attempt` (1-based): the exponential step
/// `base * 2^(n-1)` capped at `max`, with "equal jitter" (half fixed, half random) so that
/// retries of a burst spread out, never below `base` nor above `max`.
pub fn backoff(policy: &RetryPolicy, failed_attempt: u32, random: u64) -> Duration {
    let exp = failed_attempt.saturating_sub(1).min(40);
    let step = policy
        .base_delay_ms
        .saturating_mul(1u64 << exp)
        .min(policy.max_delay_ms);
    let half = step / 2;
    let jittered = half + random % (step - half + 1);
    Duration::from_millis(jittered.clamp(policy.base_delay_ms, policy.max_delay_ms))
}

/// A random number for jitter.
pub fn random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Parses `Retry-After`: delta seconds or an HTTP date. Capped at a day.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at: SystemTime = HttpDate::from_str(value).ok()?.into();
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            base_delay_ms: 1000,
            max_delay_ms: 10_000,
        }
    }

    #[test]
    fn grows_exponentially_within_bounds() {
        for r in [0, 1, 777, u64::MAX] {
            let d1 = backoff(&policy(), 1, r).as_millis();
            let d3 = backoff(&policy(), 3, r).as_millis();
            let d30 = backoff(&policy(), 30, r).as_millis();
            assert!(d1 == 1000, "{d1}");
            assert!((2000..=4000).contains(&d3), "{d3}");
            assert!((5000..=10_000).contains(&d30), "{d30}");
        }
    }

    #[test]
    fn parses_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after("Sun, 09 Sep 2001 01:46:50 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
