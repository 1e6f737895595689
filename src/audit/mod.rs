//! The PostgreSQL audit trail: rows written in batches by an actor, off the ingest path.

pub mod backfill;
pub mod db;
pub mod schema;
mod writer;

pub use crate::event::AttemptRecord;
pub use db::{PgPool, MIGRATIONS};
pub use writer::{AttemptBatch, AuditWriter, Drain, NewEventBatch, NewEventRecord};
