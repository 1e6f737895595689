//! A replica's spool folder: numbered segment files of framed records, appended and fsync'd
//! in groups, read back oldest first, removed once drained. A torn or damaged tail (a crash
//! mid-write) is found when the folder is opened and cut off, never blocking start-up;
//! damaged bytes followed by whole records are skipped instead, keeping those records.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use uuid::Uuid;

use super::record::{FrameError, SpoolRecord};

/// A segment is closed and a new one started past this size, so drained ones can go whole.
const SEGMENT_BYTES: u64 = 16 << 20;
const CURSOR_FILE: &str = "drained";
const LOCK_FILE: &str = "LOCK";

/// Where a record is: segment number and byte offset of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One spool folder, locked by this process for as long as the value lives.
pub struct Journal {
    dir: PathBuf,
    /// Held for the lock; the OS releases it when the process dies, however it dies.
    _lock: File,
    /// Segment numbers in order, each with its length in bytes.
    segments: Vec<(u64, u64)>,
    active: Option<File>,
    /// Records up to here went to Redis.
    drained: Position,
    /// Records not yet drained, by (source, key): a repeat answers duplicate at once.
    keys: HashMap<(String, String), Uuid>,
    /// Figures of the records not yet drained.
    events: u64,
    bytes: u64,
    /// Roll to a new segment past this size.
    segment_bytes: u64,
    /// The last segment could not be cut back after a failed append: the next one starts anew.
    sealed: bool,
    /// Damaged bytes followed by whole records, skipped when reading: (segment, start, end).
    gaps: Vec<(u64, u64, u64)>,
    /// A segment was created since the folder's last fsync.
    unsynced_dir: bool,
    #[cfg(test)]
    pub(crate) faults: tests::Faults,
}

impl Journal {
    /// Opens and locks `dir` (creating it); None when another live process holds it.
    /// Reads every segment to rebuild the index and cuts off a torn or damaged tail.
    pub fn open(dir: &Path) -> io::Result<Option<Journal>> {
        fs::create_dir_all(dir)?;
        Self::lock_and_read(dir, true)
    }

    /// Opens and locks an existing spool folder of another replica (never creating one);
    /// None when its replica still lives or it is no spool folder.
    pub fn adopt(dir: &Path) -> io::Result<Option<Journal>> {
        if !dir.join(LOCK_FILE).is_file() {
            return Ok(None);
        }
        Self::lock_and_read(dir, false)
    }

    fn lock_and_read(dir: &Path, create: bool) -> io::Result<Option<Journal>> {
        let lock = match OpenOptions::new()
            .create(create)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
        {
            Ok(lock) => lock,
            // Removed since we looked: drained and cleaned up by another replica.
            Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            _lock: lock,
            segments: Vec::new(),
            active: None,
            drained: read_cursor(dir),
            keys: HashMap::new(),
            events: 0,
            bytes: 0,
            segment_bytes: SEGMENT_BYTES,
            sealed: false,
            gaps: Vec::new(),
            unsynced_dir: false,
            #[cfg(test)]
            faults: tests::Faults::default(),
        };
        journal.recover()?;
        Ok(Some(journal))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records waiting to be drained, and their bytes on disk.
    pub fn figures(&self) -> (u64, u64) {
        (self.events, self.bytes)
    }

    /// The id of a waiting record with this source and key.
    pub fn find(&self, source: &str, key: &str) -> Option<Uuid> {
        self.keys
            .get(&(source.to_string(), key.to_string()))
            .copied()
    }

    fn recover(&mut self) -> io::Result<()> {
        let mut numbers: Vec<u64> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| segment_number(&e.file_name().to_string_lossy()))
            .collect();
        numbers.sort_unstable();
        for (i, &n) in numbers.iter().enumerate() {
            let path = segment_path(&self.dir, n);
            let data = fs::read(&path)?;
            let mut offset = 0usize;
            let start = if n == self.drained.segment {
                self.drained.offset as usize
            } else {
                0
            };
            while offset < data.len() {
                match SpoolRecord::decode(&data[offset..]) {
                    Ok((record, used)) => {
                        if n > self.drained.segment
                            || (n == self.drained.segment && offset >= start)
                        {
                            self.index(&record, used as u64);
                        }
                        offset += used;
                    }
                    Err(e) => {
                        // Records after the damage were answered 2xx: skip it, never cut them
                        // (in any segment: one with a gap is not the last for ever).
                        if let Some(next) = next_frame(&data, offset) {
                            let dir = self.dir.display();
                            log::error!(
                                "spool {dir}: damaged bytes {offset}..{next} of {n} skipped"
                            );
                            self.gaps.push((n, offset as u64, next as u64));
                            offset = next;
                            continue;
                        }
                        let last = i + 1 == numbers.len();
                        log::warn!(
                            "spool {}: {} bytes at the end of segment {n} dropped ({e}{})",
                            self.dir.display(),
                            data.len() - offset,
                            if matches!(e, FrameError::Torn) && last {
                                ": a write cut short by a crash"
                            } else {
                                ""
                            }
                        );
                        // Later appends must follow the last whole record.
                        OpenOptions::new()
                            .write(true)
                            .open(&path)?
                            .set_len(offset as u64)?;
                        break;
                    }
                }
            }
            self.segments.push((n, offset as u64));
        }
        // Segments wholly below the cursor were drained before a crash.
        self.release_through(self.drained)?;
        Ok(())
    }

    fn index(&mut self, record: &SpoolRecord, bytes: u64) {
        self.keys
            .insert((record.source.clone(), record.key.clone()), record.id);
        self.events += 1;
        self.bytes += bytes;
    }

    /// Appends the records and fsyncs once for all of them (group commit). On error nothing
    /// of this call counts as spooled, and its partial bytes are cut off again so that later
    /// appends follow the last whole record; when even the cut fails the segment is sealed
    /// and the next append starts a new one.
    pub fn append(&mut self, records: &[SpoolRecord]) -> io::Result<()> {
        let mut buf = BytesMut::new();
        let mut sizes = Vec::with_capacity(records.len());
        for r in records {
            let before = buf.len();
            r.encode(&mut buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            sizes.push((buf.len() - before) as u64);
        }
        let full = self.sealed
            || self
                .segments
                .last()
                .is_none_or(|&(_, len)| len >= self.segment_bytes);
        if full || self.active.is_none() {
            self.roll(full)?;
        }
        if self.unsynced_dir {
            // A new segment's name must survive a crash too; tried again until it does.
            self.sync_dir()?;
            self.unsynced_dir = false;
        }
        let Some(&(n, len)) = self.segments.last() else {
            return Err(io::Error::other("no active segment"));
        };
        if let Err(e) = self.write_synced(&buf) {
            self.cut_back(n, len);
            return Err(e);
        }
        if let Some(last) = self.segments.last_mut() {
            last.1 += buf.len() as u64;
        }
        for (r, size) in records.iter().zip(sizes) {
            self.index(r, size);
        }
        Ok(())
    }

    fn write_synced(&mut self, buf: &[u8]) -> io::Result<()> {
        let Some(file) = self.active.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        #[cfg(test)]
        if let Some(at) = self.faults.write_after.take() {
            file.write_all(&buf[..at.min(buf.len())])?;
            return Err(io::Error::other("injected write failure"));
        }
        file.write_all(buf)?;
        file.sync_data()
    }

    /// After a failed append: segment `n` back to `len` bytes, reopened by the next append;
    /// sealed when it cannot be cut (its tail past `len` is then never read).
    fn cut_back(&mut self, n: u64, len: u64) {
        self.active = None;
        #[cfg(test)]
        if self.faults.cut {
            self.sealed = true;
            return;
        }
        let cut = OpenOptions::new()
            .write(true)
            .open(segment_path(&self.dir, n))
            .and_then(|f| {
                f.set_len(len)?;
                f.sync_data()
            });
        if let Err(e) = cut {
            log::error!(
                "spool {}: segment {n} not cut back ({e}); sealed",
                self.dir.display()
            );
            self.sealed = true;
        }
    }

    /// Opens the segment to append to: the last one, or a new one when `new` (or none).
    /// A new one is recorded at once and the folder fsync'd by the append, so a failed fsync
    /// leaves no file every later roll trips over; an empty file of its number is taken over.
    fn roll(&mut self, new: bool) -> io::Result<()> {
        if new || self.segments.is_empty() {
            let n = self.segments.last().map_or(1, |&(n, _)| n + 1);
            let path = segment_path(&self.dir, n);
            let file = match OpenOptions::new().create_new(true).append(true).open(&path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let file = OpenOptions::new().append(true).open(&path)?;
                    if file.metadata()?.len() != 0 {
                        return Err(e);
                    }
                    file
                }
                other => other?,
            };
            self.segments.push((n, 0));
            self.active = Some(file);
            self.sealed = false;
            self.unsynced_dir = true;
        } else if let Some(&(n, _)) = self.segments.last() {
            let path = segment_path(&self.dir, n);
            self.active = Some(OpenOptions::new().append(true).open(path)?);
        }
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.faults.dir_sync) {
            return Err(io::Error::other("injected folder fsync failure"));
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Up to `max` waiting records, oldest first, each with the position after it.
    pub fn oldest(&self, max: usize) -> io::Result<Vec<(Position, SpoolRecord)>> {
        let mut out = Vec::new();
        for &(n, len) in &self.segments {
            if n < self.drained.segment || out.len() >= max {
                continue;
            }
            let mut from = if n == self.drained.segment {
                self.drained.offset
            } else {
                0
            };
            if from >= len {
                continue;
            }
            let mut file = File::open(segment_path(&self.dir, n))?;
            file.seek(SeekFrom::Start(from))?;
            let mut data = Vec::new();
            file.take(len - from).read_to_end(&mut data)?;
            let mut at = 0usize;
            while at < data.len() && out.len() < max {
                if let Some(&(_, _, to)) = self.gaps.iter().find(|g| (g.0, g.1) == (n, from)) {
                    at += (to - from) as usize;
                    from = to;
                    continue;
                }
                let (record, used) = SpoolRecord::decode(&data[at..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                at += used;
                from += used as u64;
                out.push((
                    Position {
                        segment: n,
                        offset: from,
                    },
                    record,
                ));
            }
        }
        Ok(out)
    }

    /// Marks everything up to `to` as in Redis: forgets those records, removes the segments
    /// they emptied and saves the cursor, so a restart does not send them again.
    pub fn drained(&mut self, to: Position, records: &[SpoolRecord]) -> io::Result<()> {
        for r in records {
            if self
                .keys
                .remove(&(r.source.clone(), r.key.clone()))
                .is_some()
            {
                self.events = self.events.saturating_sub(1);
            }
        }
        self.drained = to.max(self.drained);
        self.release_through(self.drained)?;
        write_cursor(&self.dir, self.drained)?;
        self.recount();
        Ok(())
    }

    fn recount(&mut self) {
        let drained = self.drained;
        self.bytes = self
            .segments
            .iter()
            .map(|&(n, len)| match n.cmp(&drained.segment) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => len.saturating_sub(drained.offset),
                std::cmp::Ordering::Greater => len,
            })
            .sum();
        if self.keys.is_empty() {
            self.events = 0;
        }
    }

    /// Deletes segments wholly drained, except the one being appended to.
    fn release_through(&mut self, to: Position) -> io::Result<()> {
        let last = self.segments.last().map(|&(n, _)| n);
        let mut kept = Vec::with_capacity(self.segments.len());
        for &(n, len) in &self.segments {
            let done = n < to.segment || (n == to.segment && to.offset >= len);
            if done && Some(n) != last {
                fs::remove_file(segment_path(&self.dir, n))?;
            } else {
                kept.push((n, len));
            }
        }
        self.segments = kept;
        Ok(())
    }
}

/// Where the next whole record after damaged bytes at `from` starts, if one does.
fn next_frame(data: &[u8], from: usize) -> Option<usize> {
    (from + 1..data.len()).find(|&at| SpoolRecord::decode(&data[at..]).is_ok())
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

fn segment_number(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}

fn read_cursor(dir: &Path) -> Position {
    fs::read_to_string(dir.join(CURSOR_FILE))
        .ok()
        .and_then(|text| {
            let (s, o) = text.trim().split_once(' ')?;
            Some(Position {
                segment: s.parse().ok()?,
                offset: o.parse().ok()?,
            })
        })
        .unwrap_or(Position {
            segment: 0,
            offset: 0,
        })
}

/// Written beside and renamed over, so a crash leaves the old cursor or the new one.
fn write_cursor(dir: &Path, at: Position) -> io::Result<()> {
    let tmp = dir.join(format!("{CURSOR_FILE}.tmp"));
    let mut file = File::create(&tmp)?;
    write!(file, "{} {}", at.segment, at.offset)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(CURSOR_FILE))
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
