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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::queue::RedisPool;
use crate::redis_circuit::RedisCircuit;
use crate::sources::Sources;

/// Time a webhook may take to be spooled once Redis gave up on it: the sender's wait is the
/// Redis bound plus this.
pub use crate::config::SPOOL_MARGIN;

/// What the spool holds, for `/ready`: updated by the drainer on each pass.
#[derive(Debug, Default)]
pub struct SpoolFigures {
    /// Webhooks waiting in every folder this replica drains (adopted ones too).
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    /// Bytes in its own folder, which `max_bytes` bounds.
    pub own_bytes: AtomicU64,
    /// Webhooks moved into Redis since the process started.
    pub drained: AtomicU64,
    pub max_bytes: u64,
}

impl SpoolFigures {
    /// Whether this replica's own spool is below its bound.
    pub fn has_room(&self) -> bool {
        self.own_bytes.load(Ordering::Relaxed) < self.max_bytes
    }
}

/// A running spool: its writer and its figures.
#[derive(Clone)]
pub struct Spool {
    pub writer: SpoolWriter,
    pub figures: Arc<SpoolFigures>,
}

/// Opens this replica's spool folder (adopting those of replicas that are gone), starts its
/// writer thread and its drainer. None when `spool.enabled` is false. Opening reads every
/// folder through, so it runs on a blocking thread, not the one that starts the server.
pub async fn start(
    settings: &Settings,
    redis: RedisPool,
    sources: Sources,
    circuit: Arc<RedisCircuit>,
) -> anyhow::Result<Option<Spool>> {
    if !settings.spool.enabled {
        return Ok(None);
    }
    let (root, replica_id) = (
        settings.spool.dir.clone(),
        settings.server.replica_id.clone(),
    );
    let folders = actix_web::web::block(move || Folders::open(&root, &replica_id)).await??;
    let (events, bytes) = folders.figures();
    let own = folders
        .own()
        .lock()
        .map(|j| j.dir().display().to_string())
        .unwrap_or_default();
    log::info!("spool: {own} ({events} webhooks, {bytes} bytes waiting, adopted folders included)");
    let writer = SpoolWriter::start(folders.own(), settings.spool.max_bytes);
    let figures = Arc::new(SpoolFigures {
        events: AtomicU64::new(events),
        bytes: AtomicU64::new(bytes),
        own_bytes: AtomicU64::new(folders.own_figures().1),
        drained: AtomicU64::new(0),
        max_bytes: settings.spool.max_bytes,
    });
    let drainer = Drainer {
        folders,
        figures: figures.clone(),
        redis,
        sources,
        circuit,
        timeout: Duration::from_millis(settings.redis.enqueue_timeout_ms),
        acks: crate::queue::ReplicaAcks::from_settings(&settings.redis),
    };
    actix_web::rt::spawn(drainer.run());
    Ok(Some(Spool { writer, figures }))
}
