//! The spool: a local, fsync'd journal of verified webhooks that Redis could not take in time,
//! drained into Redis when it is back. One folder per replica, each locked by its process.

pub mod drainer;
pub mod folders;
pub mod journal;
pub mod record;
pub mod writer;

pub use drainer::Drainer;
pub use folders::{FolderError, Folders, SharedJournal};
pub use journal::{Journal, Position};
pub use record::SpoolRecord;
pub use writer::{SpoolError, SpoolWriter, Spooled};

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use crate::audit::AuditWriter;
use crate::config::Settings;
use crate::queue::RedisPool;
use crate::redis_circuit::RedisCircuit;
use crate::source::Sources;

/// Time a webhook may take to be spooled once Redis gave up on it: the sender's wait is the
/// Redis bound plus this.
pub const SPOOL_MARGIN: Duration = Duration::from_millis(1000);

/// Opens this replica's spool folder (adopting those of replicas that are gone), starts its
/// writer thread and its drainer. None when `spool.enabled` is false.
pub fn start(
    settings: &Settings,
    redis: RedisPool,
    sources: Sources,
    circuit: Arc<RedisCircuit>,
    audit: Addr<AuditWriter>,
) -> Result<Option<SpoolWriter>, FolderError> {
    if !settings.spool.enabled {
        return Ok(None);
    }
    let folders = Folders::open(&settings.spool.dir, &settings.server.replica_id)?;
    let (events, bytes) = folders.figures();
    log::info!(
        "spool: {} ({} webhooks, {} bytes waiting)",
        settings
            .spool
            .dir
            .join(&settings.server.replica_id)
            .display(),
        events,
        bytes
    );
    let writer = SpoolWriter::start(folders.own(), settings.spool.max_bytes);
    let drainer = Drainer {
        folders,
        redis,
        sources,
        circuit,
        audit,
        timeout: Duration::from_millis(settings.redis.enqueue_timeout_ms),
    };
    actix_web::rt::spawn(drainer.run());
    Ok(Some(writer))
}

/// How long a batch may wait for Redis before it goes to the spool: the configured bound,
/// less the spool's margin when that would take the sender past 4.5 s.
pub fn redis_bound(settings: &Settings) -> Duration {
    let bound = Duration::from_millis(settings.redis.enqueue_timeout_ms);
    if settings.spool.enabled {
        bound.min(Duration::from_millis(4_500) - SPOOL_MARGIN)
    } else {
        bound
    }
}
