//! Delivery: per-source supervisor actors whose destination workers read the source stream
//! through one consumer group per destination, attempt each delivery over HTTP, and settle
//! its outcome (delivered, retry, dead) atomically with the acknowledgement.

mod budget;
mod claimer;
mod decision;
mod deliver;
mod fleet;
pub mod http;
mod metrics;
mod promoter;
mod reader;
mod sequencer;
mod settle;
mod supervisor;
mod trimmer;
mod worker;

pub use crate::event::QueuedEvent;
pub use budget::Budget;
pub use fleet::Fleet;
pub use supervisor::{AuditLink, Shutdown, SourceSupervisor};
