//! Redis settings under which Redis itself can drop accepted webhooks without a word: an
//! eviction policy, no persistence, a lazy fsync, fewer replicas than `WAIT` asks for. The
//! live values (`CONFIG GET`, `INFO replication`) become findings for the start-up log,
//! `hookgate check-config`, `/ready` and the `hookgate_redis_data_loss_risk` gauge.
//!
//! [`assess`] is the judgement, a pure function of what Redis said; [`read_facts`] asks it;
//! [`DurabilityMonitor`] keeps the latest answer for `/ready` and `/metrics`.

mod assess;
mod monitor;

pub use assess::*;
pub use monitor::*;

#[cfg(test)]
mod tests;
