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

/// This replica's spool folders.
pub struct Folders {
    root: PathBuf,
    own: SharedJournal,
    adopted: Vec<SharedJournal>,
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
    /// Opens (creating) and locks `root/<replica_id>`, then adopts every free folder.
    pub fn open(root: &Path, replica_id: &str) -> Result<Folders, FolderError> {
        let dir = root.join(replica_id);
        let own = Journal::open(&dir)
            .map_err(|e| FolderError::Io(dir.clone(), e))?
            .ok_or_else(|| FolderError::InUse(dir.clone()))?;
        let mut folders = Folders {
            root: root.to_path_buf(),
            own: Arc::new(Mutex::new(own)),
            adopted: Vec::new(),
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
        let mut found = 0;
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() || held.contains(&dir) {
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

    /// Removes adopted folders that are drained: their replica is gone and nothing is left.
    pub fn release_drained(&mut self) {
        self.adopted.retain(|journal| {
            let Ok(j) = journal.lock() else {
                return true;
            };
            if j.figures().0 > 0 {
                return true;
            }
            let dir = j.dir().to_path_buf();
            drop(j);
            match fs::remove_dir_all(&dir) {
                Ok(()) => log::info!("spool: {} drained and removed", dir.display()),
                Err(e) => log::warn!("spool: {} drained, not removed: {e}", dir.display()),
            }
            false
        });
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
        assert!(matches!(
            Folders::open(&root, "alive-2"),
            Err(FolderError::InUse(_))
        ));
        drop(alive);
        assert_eq!(next.adopt_free(), 2, "alive-2 and gone-1 are free now");
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
        assert!(!root.join("gone-1").exists());
        assert!(!root.join("alive-2").exists());
        assert!(root.join("next-3").exists(), "its own folder stays");
        drop(next);
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
