//! Delivery: per-source supervisor actors whose destination workers read the source stream
//! through one consumer group per destination, attempt each delivery over HTTP, and settle
//! its outcome (delivered, retry, dead) atomically with the acknowledgement.

pub mod http;
mod supervisor;
mod worker;

pub use crate::event::QueuedEvent;
pub use supervisor::{AuditLink, Budget, Shutdown, SourceSupervisor};
