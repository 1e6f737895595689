//! The PostgreSQL audit trail: rows written in batches by an actor, off the ingest path.

pub mod backfill;
pub mod db;
pub mod schema;
mod writer;

pub use db::{PgPool, MIGRATIONS};
pub use writer::{AttemptBatch, AttemptRecord, AuditWriter, Drain, NewEventBatch, NewEventRecord};
