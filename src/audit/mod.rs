//! The PostgreSQL audit trail: rows written in batches by each replica's audit consumer,
//! from what Redis holds (accepted events, delivery outcomes), off the ingest path.

mod background;
mod batch;
mod consumer;
pub mod db;
#[cfg(test)]
mod fixtures;
mod fold;
mod lanes;
mod leasing;
pub mod partitions;
mod pressure;
mod row;
pub mod schema;
mod store;

pub use crate::event::AttemptRecord;
pub use consumer::AuditConsumer;
pub use db::{PgPool, MIGRATIONS};
pub use lanes::AuditLeases;
pub use row::NewEventRow;
