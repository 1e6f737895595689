//! The spool's writer thread: webhooks that arrive while an fsync is running are written and
//! fsync'd together by the next one (group commit), so a burst costs one fsync per group,
//! not one per webhook, and no request waits for a timer.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::journal::Journal;
use super::record::SpoolRecord;

/// Most records one fsync covers; the rest wait for the next.
const MAX_GROUP: usize = 1024;

/// What the spool did with a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spooled {
    /// Written and fsync'd: the sender may be answered 2xx.
    Written { id: Uuid },
    /// The same source and key wait in this spool already, under this id.
    Duplicate { id: Uuid },
}

/// Why the spool did not take a webhook (the sender gets a 503).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("the spool cannot be written: {0}")]
    Io(String),
    #[error("the spool is closed")]
    Closed,
}

type Reply = tokio::sync::oneshot::Sender<Result<Spooled, SpoolError>>;

struct Request {
    record: SpoolRecord,
    reply: Reply,
}

/// A handle to the writer thread of this replica's own spool folder.
#[derive(Clone)]
pub struct SpoolWriter {
    tx: mpsc::Sender<Request>,
}

impl SpoolWriter {
    /// Starts the writer thread over `journal`, refusing records past `max_bytes`.
    pub fn start(journal: Arc<Mutex<Journal>>, max_bytes: u64) -> SpoolWriter {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("hookgate-spool".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(r) => group.push(r),
                            Err(_) => break,
                        }
                    }
                    write_group(&journal, max_bytes, group);
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| log::error!("the spool writer thread did not start: {e}"));
        SpoolWriter { tx }
    }

    /// Writes one webhook; resolves once it is fsync'd (or refused).
    pub async fn spool(&self, record: SpoolRecord) -> Result<Spooled, SpoolError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(Request { record, reply })
            .map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }
}

fn write_group(journal: &Mutex<Journal>, max_bytes: u64, group: Vec<Request>) {
    let Ok(mut journal) = journal.lock() else {
        for r in group {
            let _ = r.reply.send(Err(SpoolError::Closed));
        }
        return;
    };
    let (_, mut bytes) = journal.figures();
    // (source, key) of each record of this group, and the repeats of it that wait on its write.
    let mut in_group: HashMap<(String, String), usize> = HashMap::new();
    let mut records = Vec::new();
    let mut waiting = Vec::new();
    let mut repeats: Vec<(usize, Reply)> = Vec::new();
    for Request { record, reply } in group {
        if let Some(id) = journal.find(&record.source, &record.key) {
            let _ = reply.send(Ok(Spooled::Duplicate { id }));
            continue;
        }
        let key = (record.source.clone(), record.key.clone());
        // Answered once the first is on disk, with its fate: never 2xx for a failed write.
        if let Some(&first) = in_group.get(&key) {
            repeats.push((first, reply));
            continue;
        }
        // Framing plus payload, close enough for a bound.
        let size = (record.body.len() + record.headers.len() + record.key.len() + 64) as u64;
        if bytes + size > max_bytes {
            let _ = reply.send(Err(SpoolError::Full { max_bytes }));
            continue;
        }
        bytes += size;
        in_group.insert(key, records.len());
        waiting.push((record.id, reply));
        records.push(record);
    }
    if records.is_empty() {
        return;
    }
    let written = journal.append(&records);
    let answer = |spooled: Spooled| match &written {
        Ok(()) => Ok(spooled),
        Err(e) => Err(SpoolError::Io(e.to_string())),
    };
    for (first, reply) in repeats {
        let _ = reply.send(answer(Spooled::Duplicate {
            id: records[first].id,
        }));
    }
    for (id, reply) in waiting {
        let _ = reply.send(answer(Spooled::Written { id }));
    }
    if let Err(e) = written {
        log::error!("spool {}: write failed: {e}", journal.dir().display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::record::sample;

    #[actix_web::test]
    async fn concurrent_webhooks_are_written_repeats_are_duplicates_and_the_bound_holds() {
        let dir = std::env::temp_dir().join(format!("hookgate-spool-{}", Uuid::new_v4()));
        let journal = Arc::new(Mutex::new(
            Journal::open(&dir).expect("open").expect("free"),
        ));
        let writer = SpoolWriter::start(journal.clone(), 4096);
        let records: Vec<_> = (0..20).map(sample).collect();
        let answers =
            futures_util::future::join_all(records.iter().cloned().map(|r| writer.spool(r))).await;
        for (r, a) in records.iter().zip(&answers) {
            assert_eq!(a.as_ref().ok(), Some(&Spooled::Written { id: r.id }));
        }
        // The same key again, under a new id: the first id is the answer.
        let mut again = records[3].clone();
        again.id = Uuid::now_v7();
        assert_eq!(
            writer.spool(again).await.ok(),
            Some(Spooled::Duplicate { id: records[3].id })
        );
        // Past max_bytes: refused, and the spool keeps what it had.
        let mut big = sample(99);
        big.body = bytes::Bytes::from(vec![b'x'; 8192]);
        assert!(matches!(
            writer.spool(big).await,
            Err(SpoolError::Full { max_bytes: 4096 })
        ));
        assert_eq!(journal.lock().expect("lock").figures().0, 20);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// One group of `records`, as the writer thread would take it; the answers in order.
    fn one_group(
        journal: &Mutex<Journal>,
        records: Vec<SpoolRecord>,
    ) -> Vec<Result<Spooled, SpoolError>> {
        let (group, answers): (Vec<_>, Vec<_>) = records
            .into_iter()
            .map(|record| {
                let (reply, answer) = tokio::sync::oneshot::channel();
                (Request { record, reply }, answer)
            })
            .unzip();
        write_group(journal, u64::MAX, group);
        answers
            .into_iter()
            .map(|mut a| a.try_recv().expect("answered"))
            .collect()
    }

    #[test]
    fn a_repeat_in_the_same_group_gets_the_first_ones_fate() {
        let dir = std::env::temp_dir().join(format!("hookgate-spool-{}", Uuid::new_v4()));
        let journal = Mutex::new(Journal::open(&dir).expect("open").expect("free"));
        let first = sample(1);
        let mut repeat = first.clone();
        repeat.id = Uuid::now_v7();

        journal.lock().expect("lock").faults.write_after = Some(10);
        let answers = one_group(&journal, vec![first.clone(), repeat.clone()]);
        assert!(matches!(answers[0], Err(SpoolError::Io(_))));
        assert!(
            matches!(answers[1], Err(SpoolError::Io(_))),
            "no 2xx for a write that failed: {:?}",
            answers[1]
        );

        let answers = one_group(&journal, vec![first.clone(), repeat]);
        assert_eq!(
            answers[0].as_ref().ok(),
            Some(&Spooled::Written { id: first.id })
        );
        assert_eq!(
            answers[1].as_ref().ok(),
            Some(&Spooled::Duplicate { id: first.id })
        );
        assert_eq!(journal.lock().expect("lock").figures().0, 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_record_past_the_frame_limit_is_refused() {
        let dir = std::env::temp_dir().join(format!("hookgate-spool-{}", Uuid::new_v4()));
        let journal = Mutex::new(Journal::open(&dir).expect("open").expect("free"));
        let mut big = sample(1);
        big.body = bytes::Bytes::from(vec![b'x'; crate::spool::record::MAX_PAYLOAD]);
        let answers = one_group(&journal, vec![big]);
        assert!(matches!(answers[0], Err(SpoolError::Io(_))));
        assert_eq!(journal.lock().expect("lock").figures().0, 0);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
