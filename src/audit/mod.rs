//! The PostgreSQL audit trail: rows written in batches by an actor, off the ingest path.

pub mod backfill;
pub mod db;
#[cfg(test)]
mod fixtures;
mod fold;
mod row;
pub mod schema;
mod store;
mod writer;

pub use crate::event::AttemptRecord;
pub use db::{PgPool, MIGRATIONS};
pub use row::{AttemptBatch, Drain, NewEventBatch, NewEventRecord};
pub use writer::AuditWriter;
