//! The journal against real files in a temporary folder.

use super::*;
use crate::spool::record::sample;

fn temp() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hookgate-spool-{}", Uuid::new_v4()));
    fs::create_dir_all(&dir).expect("temp");
    dir
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
    let rest: Vec<_> = j
        .oldest(10)
        .expect("read")
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(rest, written[3..]);
    assert_eq!(j.figures().0, 2);
    fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_folder_is_locked_while_its_journal_lives() {
    let dir = temp();
    let j = Journal::open(&dir).expect("open").expect("free");
    assert!(Journal::open(&dir).expect("open").is_none(), "locked");
    drop(j);
    assert!(Journal::open(&dir).expect("open").is_some(), "free again");
    fs::remove_dir_all(&dir).expect("cleanup");
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
    let back: Vec<_> = j
        .oldest(10)
        .expect("read")
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(back, written[..3]);
    let later = sample(9);
    j.append(std::slice::from_ref(&later))
        .expect("append after the tear");
    let back: Vec<_> = j
        .oldest(10)
        .expect("read")
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(back.len(), 4);
    assert_eq!(back[3], later);
    fs::remove_dir_all(&dir).expect("cleanup");
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
    fs::remove_dir_all(&dir).expect("cleanup");
}
