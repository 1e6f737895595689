//! hookgate: a self-hosted webhook gateway. Senders post to `/webhooks/{source}`; each webhook
//! is verified (`verify`), keyed (`idempotency`), de-duplicated and persisted in a Redis stream
//! in one atomic step (`ingest` → `dispatch` → `queue`), or spooled to disk while Redis is
//! away (`spool`), and recorded in PostgreSQL from Redis (`audit`). Per-source supervisors
//! deliver it to the operator's services (`delivery`), with backoff (`retry`), a shared breaker
//! per destination (`circuit`) and a dead-letter stream. What Redis loses is queued again
//! from the audit trail (`recovery`).

pub mod admin;
pub mod audit;
pub mod circuit;
pub mod cli;
pub mod client;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod health;
pub mod http_refusals;
pub mod idempotency;
pub mod ingest;
pub mod notify;
pub mod partition_layout;
pub mod queue;
pub mod recovery;
pub mod redis_circuit;
pub mod redis_client;
pub mod redis_durability;
pub mod reload;
pub mod replicas;
pub mod retry;
pub mod routing;
pub mod send;
pub mod signature_kind;
pub mod source;
pub mod sources;
pub mod spool;
pub mod startup;
pub mod stats;
pub mod status;
pub mod telemetry;
pub mod traces;
pub mod verify;
