//! Integration tests against the real Redis and PostgreSQL.

mod admin;
mod cluster;
mod cluster_script;
mod dashboard;
mod delivery;
mod forwarding;
mod helpers;
mod ingest;
mod ingest_errors;
mod metrics;
mod notifications;
mod openapi;
mod ordering;
mod partitions;
mod recovery;
mod redis_durability;
mod redis_server;
mod registration;
mod reload;
mod replay_new_id;
mod resilience;
mod retention;
mod routing;
mod sink;
mod spool;
mod takeover;
