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
