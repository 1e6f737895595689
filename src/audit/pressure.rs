//! When the audit trail yields to ingest. Writing the trail costs PostgreSQL and Redis CPU
//! that `audit.nice` cannot lower (they are other processes): on a host whose CPUs are
//! saturated, a burst of webhooks was answered at 1.3-1.7 times the one-`EVAL` baseline's
//! rate with the trail waiting for it to pass, and 0.8-0.9 times with the trail written
//! alongside (`scripts/bench-ingest.sh`, 2 cores). So while Linux's pressure stall information
//! says some task waited for a CPU at least half of the time, the consumer pauses, for
//! `audit.yield_ms` at most, and then writes until it has caught up, whatever the load.

use std::time::{Duration, Instant};

/// The kernel's CPU pressure: cumulative µs in which some runnable task waited for a CPU.
const PSI_CPU: &str = "/proc/pressure/cpu";
/// From this share of the time with some task waiting for a CPU, the host is saturated.
pub(super) const SATURATED: f64 = 0.5;

/// Reads the host's CPU pressure between one call and the next.
#[derive(Default)]
pub(super) struct CpuPressure {
    last: Option<(u64, Instant)>,
}

impl CpuPressure {
    /// The share of the time since the last call in which some task waited for a CPU; None
    /// on the first call, and where the kernel does not tell (not Linux, or PSI off).
    pub fn share(&mut self) -> Option<f64> {
        let total = some_total(&std::fs::read_to_string(PSI_CPU).ok()?)?;
        let now = Instant::now();
        let (before, at) = self.last.replace((total, now))?;
        Some(stall_share(before, total, now - at))
    }
}

/// The `total=` of the `some` line of a PSI file.
fn some_total(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

/// The share of `elapsed` that the stall counter grew by, from 0 to 1.
fn stall_share(before: u64, after: u64, elapsed: Duration) -> f64 {
    let stalled = after.saturating_sub(before) as f64;
    (stalled / elapsed.as_micros().max(1) as f64).min(1.0)
}

/// Where the consumer stands in yielding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Yield {
    /// Writing as usual.
    #[default]
    No,
    /// Behind since then, by yielding: it waits while the host is saturated, writes while it
    /// is not, and is back to `No` once a round finds less than a full batch (caught up; the
    /// next wait starts a new clock). A calm moment that leaves it behind does not start the
    /// clock again, so the wait stays bounded under a long load.
    Since(Instant),
    /// It waited its longest: it writes until a round finds less than a full batch.
    CatchingUp,
}

/// This round's step: the next state, and whether to skip writing. `saturated` says the host
/// is; `backlog_ok` that every partition held has room to wait (far below
/// `audit.max_backlog`, past which unwritten entries are trimmed).
pub(super) fn yield_step(
    state: Yield,
    saturated: bool,
    backlog_ok: bool,
    now: Instant,
    longest: Duration,
) -> (Yield, bool) {
    if longest.is_zero() {
        return (Yield::No, false);
    }
    match state {
        Yield::CatchingUp => (Yield::CatchingUp, false),
        Yield::Since(t) if now.duration_since(t) >= longest => (Yield::CatchingUp, false),
        _ if !saturated || !backlog_ok => (state, false),
        Yield::No => (Yield::Since(now), true),
        Yield::Since(t) => (Yield::Since(t), true),
    }
}

/// After a round that wrote: caught up once a batch was not full.
pub(super) fn after_write(state: Yield, batch_was_full: bool) -> Yield {
    if batch_was_full {
        state
    } else {
        Yield::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGEST: Duration = Duration::from_secs(5);

    #[test]
    fn the_some_total_is_read_from_the_kernel_format() {
        let text = "some avg10=0.42 avg60=7.88 avg300=11.56 total=504933202\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(some_total(text), Some(504_933_202));
        assert_eq!(some_total("full avg10=0.00 total=7\n"), None);
        assert_eq!(some_total("some avg10=0.00 total=x\n"), None);
    }

    #[test]
    fn the_share_is_the_stall_over_the_time() {
        let second = Duration::from_secs(1);
        assert_eq!(stall_share(1_000, 501_000, second), 0.5);
        assert_eq!(stall_share(0, 3_000_000, second), 1.0, "bounded by 1");
        assert_eq!(stall_share(9, 3, second), 0.0, "a counter that went back");
        assert!(stall_share(0, 10, Duration::ZERO) <= 1.0);
    }

    #[test]
    fn the_kernels_pressure_is_read_where_it_is_told() {
        let mut p = CpuPressure::default();
        let first = p.share();
        assert_eq!(first, None, "no share before a second reading");
        if std::path::Path::new(PSI_CPU).exists() {
            let share = p.share().expect("a share on the second reading");
            assert!((0.0..=1.0).contains(&share));
        }
    }

    #[test]
    fn it_yields_while_saturated_for_the_longest_then_catches_up() {
        let t0 = Instant::now();
        let (s, skip) = yield_step(Yield::No, true, true, t0, LONGEST);
        assert_eq!((s, skip), (Yield::Since(t0), true));
        let (s, skip) = yield_step(s, true, true, t0 + Duration::from_secs(4), LONGEST);
        assert_eq!((s, skip), (Yield::Since(t0), true));
        let (s, skip) = yield_step(s, true, true, t0 + LONGEST, LONGEST);
        assert_eq!((s, skip), (Yield::CatchingUp, false));
        // Still saturated: it writes until a batch is not full.
        let (s, skip) = yield_step(s, true, true, t0 + LONGEST, LONGEST);
        assert_eq!((s, skip), (Yield::CatchingUp, false));
        assert_eq!(after_write(s, true), Yield::CatchingUp);
        let s = after_write(s, false);
        assert_eq!(s, Yield::No);
        let later = t0 + Duration::from_secs(9);
        assert_eq!(
            yield_step(s, true, true, later, LONGEST),
            (Yield::Since(later), true),
            "caught up, it may yield again"
        );
    }

    #[test]
    fn it_writes_when_calm_when_a_backlog_is_long_or_when_told_never_to_yield() {
        let t0 = Instant::now();
        let since = Yield::Since(t0);
        assert_eq!(
            yield_step(Yield::No, false, true, t0, LONGEST),
            (Yield::No, false)
        );
        assert_eq!(
            yield_step(Yield::No, true, false, t0, LONGEST),
            (Yield::No, false)
        );
        assert_eq!(
            yield_step(Yield::No, true, true, t0, Duration::ZERO),
            (Yield::No, false)
        );
        // Behind, a calm moment or a long backlog writes, and the clock keeps running.
        assert_eq!(yield_step(since, false, true, t0, LONGEST), (since, false));
        assert_eq!(yield_step(since, true, false, t0, LONGEST), (since, false));
        assert_eq!(after_write(since, true), since);
        let late = t0 + LONGEST;
        assert_eq!(
            yield_step(since, true, true, late, LONGEST),
            (Yield::CatchingUp, false),
            "calm moments do not make the wait longer"
        );
        assert_eq!(after_write(since, false), Yield::No, "caught up");
    }
}
