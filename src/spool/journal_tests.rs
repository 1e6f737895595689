//! The journal against real files in a temporary folder.

use super::*;
use crate::spool::record::{sample, SpoolRecord};

/// Failures a test makes the next append meet.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Write this many bytes of the next append, then fail.
    pub write_after: Option<usize>,
    /// Fail the cut after a failed append.
    pub cut: bool,
    /// Fail the next folder fsync.
    pub dir_sync: bool,
}

/// A temporary folder, removed when dropped (also when the test fails).
struct Temp(PathBuf);

impl std::ops::Deref for Temp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn temp() -> Temp {
    let dir = std::env::temp_dir().join(format!("hookgate-spool-{}", Uuid::new_v4()));
    fs::create_dir_all(&dir).expect("temp");
    Temp(dir)
}

#[test]
fn records_come_back_oldest_first_after_a_reopen_and_go_once_drained() {
    let dir = temp();
    let mut j = Journal::open(&dir).expect("open").expect("free");
    let written: Vec<_> = (0..5).map(sample).collect();
    j.append(&written[..2]).expect("append");
    j.append(&written[2..]).expect("append");
    assert_eq!(j.find("pluggy", "key-3"), Some(written[3].id));
    assert_eq!(j.figures().0, 5);
    drop(j);

    let mut j = Journal::open(&dir).expect("open").expect("free");
    let back = j.oldest(3).expect("read");
    let records: Vec<_> = back.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(records, written[..3]);
    j.drained(back[2].0, &records).expect("drained");
    assert_eq!(j.figures().0, 2);
    assert_eq!(j.find("pluggy", "key-0"), None);
    drop(j);

    let j = Journal::open(&dir).expect("open").expect("free");
    let rest: Vec<_> = all(&j);
    assert_eq!(rest, written[3..]);
    assert_eq!(j.figures().0, 2);
}

#[test]
fn a_folder_is_locked_while_its_journal_lives() {
    let dir = temp();
    let j = Journal::open(&dir).expect("open").expect("free");
    assert!(Journal::open(&dir).expect("open").is_none(), "locked");
    drop(j);
    assert!(Journal::open(&dir).expect("open").is_some(), "free again");
}

#[test]
fn a_torn_last_record_is_cut_off_and_the_rest_drains_and_appends_go_on() {
    let dir = temp();
    let mut j = Journal::open(&dir).expect("open").expect("free");
    let written: Vec<_> = (0..4).map(sample).collect();
    j.append(&written).expect("append");
    drop(j);
    // A crash in the middle of the last record.
    let seg = segment_path(&dir, 1);
    let len = fs::metadata(&seg).expect("segment").len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .and_then(|f| f.set_len(len - 5))
        .expect("truncate");

    let mut j = Journal::open(&dir)
        .expect("opens despite the tear")
        .expect("free");
    let back: Vec<_> = all(&j);
    assert_eq!(back, written[..3]);
    let later = sample(9);
    j.append(std::slice::from_ref(&later))
        .expect("append after the tear");
    let back: Vec<_> = all(&j);
    assert_eq!(back.len(), 4);
    assert_eq!(back[3], later);
}

#[test]
fn drained_segments_are_deleted_but_the_one_appended_to_stays() {
    let dir = temp();
    let mut j = Journal::open(&dir).expect("open").expect("free");
    j.segment_bytes = 1;
    j.append(&[sample(1)]).expect("append");
    j.append(&[sample(2)]).expect("append");
    assert!(segment_path(&dir, 2).exists(), "one record per segment");
    let all = j.oldest(10).expect("read");
    assert_eq!(all.len(), 2);
    j.drained(all[0].0, &[all[0].1.clone()]).expect("drained");
    assert!(!segment_path(&dir, 1).exists(), "drained segment removed");
    assert_eq!(j.figures().0, 1);
    j.drained(all[1].0, &[all[1].1.clone()]).expect("drained");
    assert!(
        segment_path(&dir, 2).exists(),
        "the segment appended to stays"
    );
    assert_eq!(j.figures(), (0, 0));
    drop(j);
    let j = Journal::open(&dir).expect("open").expect("free");
    assert!(
        j.oldest(10).expect("read").is_empty(),
        "nothing drained comes back"
    );
}

fn all(j: &Journal) -> Vec<SpoolRecord> {
    j.oldest(100)
        .expect("read")
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

#[test]
fn a_failed_append_leaves_no_bytes_behind_and_later_appends_read_back_after_a_reopen() {
    let dir = temp();
    let mut j = Journal::open(&dir).expect("open").expect("free");
    j.append(&[sample(0)]).expect("append");
    j.faults.write_after = Some(20);
    assert!(j.append(&[sample(1), sample(2)]).is_err(), "failed midway");
    assert_eq!(j.find("pluggy", "key-1"), None, "nothing of it counts");
    let later = [sample(0), sample(3), sample(4)];
    j.append(&later[1..2]).expect("append after the failure");
    j.append(&later[2..]).expect("append");
    assert_eq!(all(&j)[1..], later[1..]);
    drop(j);
    let j = Journal::open(&dir).expect("open").expect("free");
    assert_eq!(all(&j)[1..], later[1..], "still there after a reopen");
    assert_eq!(j.figures().0, 3);
}

#[test]
fn a_segment_that_cannot_be_cut_back_is_sealed_and_the_next_append_starts_a_new_one() {
    let dir = temp();
    let mut j = Journal::open(&dir).expect("open").expect("free");
    let first = sample(0);
    j.append(std::slice::from_ref(&first)).expect("append");
    j.faults.write_after = Some(20);
    j.faults.cut = true;
    assert!(j.append(&[sample(1)]).is_err());
    let later = sample(2);
    j.append(std::slice::from_ref(&later)).expect("append");
    assert!(segment_path(&dir, 2).exists(), "a new segment");
    assert_eq!(all(&j), [first.clone(), later.clone()]);
    drop(j);
    let j = Journal::open(&dir).expect("open").expect("free");
    assert_eq!(all(&j), [first, later], "after a reopen");
}

#[test]
fn a_failed_folder_fsync_on_roll_does_not_make_every_later_roll_fail() {
    let dir = temp();
    let mut j = Journal::open(&dir).expect("open").expect("free");
    j.segment_bytes = 1;
    j.append(&[sample(0)]).expect("append");
    j.faults.dir_sync = true;
    assert!(j.append(&[sample(1)]).is_err(), "the folder fsync failed");
    let later: Vec<_> = (2..4).map(sample).collect();
    j.append(&later[..1])
        .expect("append after the failed fsync");
    j.append(&later[1..]).expect("and a roll after it");
    assert_eq!(all(&j)[1..], later[..]);
    drop(j);
    let j = Journal::open(&dir).expect("open").expect("free");
    assert_eq!(all(&j)[1..], later[..]);
}

#[test]
fn a_roll_takes_over_an_empty_segment_file_of_its_number() {
    let dir = temp();
    let mut j = Journal::open(&dir).expect("open").expect("free");
    j.segment_bytes = 1;
    j.append(&[sample(0)]).expect("append");
    File::create(segment_path(&dir, 2)).expect("an empty leftover");
    j.append(&[sample(1)]).expect("roll onto the empty file");
    assert_eq!(all(&j).len(), 2);
}

#[test]
fn damage_followed_by_whole_records_is_skipped_not_cut_even_once_the_segment_is_not_last() {
    let dir = temp();
    let mut j = Journal::open(&dir).expect("open").expect("free");
    let written: Vec<_> = (0..3).map(sample).collect();
    for r in &written {
        j.append(std::slice::from_ref(r)).expect("append");
    }
    drop(j);
    // A bit flipped in the middle record's payload.
    let seg = segment_path(&dir, 1);
    let mut data = fs::read(&seg).expect("segment");
    let len = data.len();
    data[len / 2] ^= 0x10;
    fs::write(&seg, &data).expect("damage");

    let mut j = Journal::open(&dir).expect("open").expect("free");
    assert_eq!(
        fs::metadata(&seg).expect("segment").len(),
        len as u64,
        "not cut"
    );
    let kept = [written[0].clone(), written[2].clone()];
    assert_eq!(all(&j), kept);
    let later = sample(9);
    j.segment_bytes = 1;
    j.append(std::slice::from_ref(&later)).expect("append");
    assert!(
        segment_path(&dir, 2).exists(),
        "the damaged segment is not the last now"
    );
    let back = j.oldest(100).expect("read");
    assert_eq!(back.len(), 3);
    j.drained(back[0].0, &[back[0].1.clone()]).expect("drained");
    drop(j);
    let j = Journal::open(&dir).expect("open").expect("free");
    assert_eq!(
        all(&j),
        [written[2].clone(), later],
        "after the gap, in order"
    );
}
