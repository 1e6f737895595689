//! The spool folders a replica drains: its own (`spool.dir/<replica id>`, written by its
//! writer thread) and every other folder whose replica is gone (its lock is free): a
//! replaced container's spool on a shared volume is drained by whoever runs next.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::journal::Journal;

/// A journal shared by the writer thread and the drainer.
pub type SharedJournal = Arc<Mutex<Journal>>;

/// How long a folder let go (it holds a source this replica does not know) is left alone.
const LET_GO_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// This replica's spool folders.
pub struct Folders {
    root: PathBuf,
    own: SharedJournal,
    adopted: Vec<SharedJournal>,
    /// Folders let go, and when: not adopted again before [`LET_GO_FOR`].
    let_go: Vec<(PathBuf, std::time::Instant)>,
}

/// Why the replica's own spool folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("spool folder {0} is locked by another running process: give each replica its own server.replica_id")]
    InUse(PathBuf),
    #[error("spool folder {0}: {1}")]
    Io(PathBuf, io::Error),
}

impl Folders {
    /// Opens (creating) and locks `root/<replica_id>`, then adopts every free folder. When
    /// that folder is held (a replica id reused, as a restarted container's `hostname-pid`
    /// is, while a peer drains the old folder), it takes `<replica_id>-<random>` instead.
    pub fn open(root: &Path, replica_id: &str) -> Result<Folders, FolderError> {
        let mut dir = root.join(replica_id);
        let own = match Journal::open(&dir).map_err(|e| FolderError::Io(dir.clone(), e))? {
            Some(own) => own,
            None => {
                let fresh = format!(
                    "{replica_id}-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                );
                log::warn!(
                    "spool: {} is held by another process; this replica spools to {fresh}",
                    dir.display()
                );
                dir = root.join(fresh);
                Journal::open(&dir)
                    .map_err(|e| FolderError::Io(dir.clone(), e))?
                    .ok_or_else(|| FolderError::InUse(dir.clone()))?
            }
        };
        let mut folders = Folders {
            root: root.to_path_buf(),
            own: Arc::new(Mutex::new(own)),
            adopted: Vec::new(),
            let_go: Vec::new(),
        };
        folders.adopt_free();
        Ok(folders)
    }

    /// The journal this replica writes.
    pub fn own(&self) -> SharedJournal {
        self.own.clone()
    }

    /// Every journal to drain, its own first.
    pub fn all(&self) -> Vec<SharedJournal> {
        std::iter::once(self.own.clone())
            .chain(self.adopted.iter().cloned())
            .collect()
    }

    /// Adopts the folders of replicas that are gone; returns how many were new.
    pub fn adopt_free(&mut self) -> usize {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return 0;
        };
        let held: Vec<PathBuf> = self
            .all()
            .iter()
            .filter_map(|j| j.lock().ok().map(|j| j.dir().to_path_buf()))
            .collect();
        self.let_go.retain(|(_, at)| at.elapsed() < LET_GO_FOR);
        let mut found = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            // Dot-folders are drained ones on their way out.
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden
                || !dir.is_dir()
                || held.contains(&dir)
                || self.let_go.iter().any(|(d, _)| d == &dir)
            {
                continue;
            }
            match Journal::adopt(&dir) {
                Ok(Some(journal)) => {
                    let (events, _) = journal.figures();
                    log::info!(
                        "spool: adopted {} of a replica that is gone ({events} webhooks to drain)",
                        dir.display()
                    );
                    self.adopted.push(Arc::new(Mutex::new(journal)));
                    found += 1;
                }
                Ok(None) => {}
                Err(e) => log::warn!("spool: cannot adopt {}: {e}", dir.display()),
            }
        }
        found
    }

    /// Lets go of an adopted folder (unlocks it) for a while, so that another replica may
    /// drain it; the replica's own folder is never let go.
    pub fn let_go(&mut self, journal: &SharedJournal) {
        self.adopted.retain(|j| {
            if !Arc::ptr_eq(j, journal) {
                return true;
            }
            if let Ok(j) = j.lock() {
                self.let_go
                    .push((j.dir().to_path_buf(), std::time::Instant::now()));
            }
            false
        });
    }

    /// Removes adopted folders that are drained: their replica is gone and nothing is left.
    /// The folder is first renamed to a dot-name while still locked, so that a replica
    /// starting again under its old name makes a new folder instead of writing into one
    /// being deleted.
    pub fn release_drained(&mut self) {
        self.adopted.retain(|journal| {
            let Ok(j) = journal.lock() else {
                return true;
            };
            if j.figures().0 > 0 {
                return true;
            }
            let dir = j.dir().to_path_buf();
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            let gone = dir.with_file_name(format!(
                ".{}.drained-{}",
                name.unwrap_or_default(),
                uuid::Uuid::new_v4().simple()
            ));
            if let Err(e) = fs::rename(&dir, &gone) {
                log::warn!("spool: {} drained, not removed: {e}", dir.display());
                return true;
            }
            drop(j);
            match fs::remove_dir_all(&gone) {
                Ok(()) => log::info!("spool: {} drained and removed", dir.display()),
                Err(e) => log::warn!("spool: {} drained, not removed: {e}", gone.display()),
            }
            false
        });
    }

    /// Webhooks waiting in this replica's own folder, and their bytes (what `spool.max_bytes`
    /// bounds).
    pub fn own_figures(&self) -> (u64, u64) {
        self.own.lock().map(|j| j.figures()).unwrap_or((0, 0))
    }

    /// Webhooks waiting in every folder, and their bytes.
    pub fn figures(&self) -> (u64, u64) {
        self.all()
            .iter()
            .filter_map(|j| j.lock().ok().map(|j| j.figures()))
            .fold((0, 0), |(e, b), (e2, b2)| (e + e2, b + b2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::record::sample;

    #[test]
    fn a_gone_replicas_folder_is_adopted_and_removed_once_drained() {
        let root = std::env::temp_dir().join(format!("hookgate-spools-{}", uuid::Uuid::new_v4()));
        // A replica that spooled two webhooks and died.
        {
            let gone = Folders::open(&root, "gone-1").expect("open");
            let own = gone.own();
            let mut j = own.lock().expect("lock");
            j.append(&[sample(1), sample(2)]).expect("append");
        }
        // One that still runs.
        let alive = Folders::open(&root, "alive-2").expect("open");
        assert_eq!(alive.adopted.len(), 1, "the gone replica's folder");

        let mut next = Folders::open(&root, "next-3").expect("open");
        assert!(next.adopted.is_empty(), "both others are held");
        // The same replica id again (a restarted container): a folder of its own.
        let again = Folders::open(&root, "alive-2").expect("open");
        let own = again.own().lock().expect("lock").dir().to_path_buf();
        assert_ne!(own, root.join("alive-2"));
        assert!(
            own.to_string_lossy().contains("alive-2-"),
            "{}",
            own.display()
        );
        drop(again);
        drop(alive);
        assert_eq!(
            next.adopt_free(),
            3,
            "alive-2, its namesake and gone-1 are free now"
        );
        assert_eq!(next.figures().0, 2);
        for journal in next.all() {
            let mut j = journal.lock().expect("lock");
            let all = j.oldest(10).expect("read");
            if let Some((to, _)) = all.last() {
                let records: Vec<_> = all.iter().map(|(_, r)| r.clone()).collect();
                j.drained(*to, &records).expect("drained");
            }
        }
        next.release_drained();
        let left: Vec<String> = fs::read_dir(&root)
            .expect("root")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["next-3"], "drained folders removed, its own stays");
        drop(next);
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
