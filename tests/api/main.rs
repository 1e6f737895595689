//! Integration tests against the real Redis and PostgreSQL.

mod helpers;
mod ingest;
mod ingest_errors;
mod resilience;
