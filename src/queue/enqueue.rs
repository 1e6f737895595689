//! De-duplicate and append to a source's stream: one event, or a batch of one source's events.

use super::RedisPool;
use crate::source::{partition_index, Source, SourceKeys};

/// De-duplication and stream append for a batch of events of one source, each event atomic
/// on its own (group commit: one round trip for what arrived during the last one).
///
/// KEYS[1] the stream, KEYS[1+i] the dedup key of event i. ARGV[1] dedup TTL seconds, then
/// per event: id, key, type, ts, ct, hdr, body. Returns per event `{1, stream id}` queued,
/// `{0, first id}` seen before (also the same key earlier in this batch), or `{-1, error}`:
/// a failed step removes that event's dedup key again and leaves the others as they are.
pub const ENQUEUE_BATCH_LUA: &str = r#"
local out = {}
for i = 2, #KEYS do
  local a = 1 + (i - 2) * 7
  local id = ARGV[a + 1]
  local set = redis.pcall('SET', KEYS[i], id, 'NX', 'EX', ARGV[1])
  if type(set) == 'table' and set.err then
    out[#out + 1] = {-1, set.err}
  elseif not set then
    out[#out + 1] = {0, redis.call('GET', KEYS[i]) or ''}
  else
    local sid = redis.pcall('XADD', KEYS[1], '*',
      'id', id, 'key', ARGV[a + 2], 'type', ARGV[a + 3], 'ts', ARGV[a + 4],
      'ct', ARGV[a + 5], 'hdr', ARGV[a + 6], 'body', ARGV[a + 7])
    if type(sid) == 'table' and sid.err then
      redis.call('DEL', KEYS[i])
      out[#out + 1] = {-1, sid.err}
    else
      out[#out + 1] = {1, sid}
    end
  end
end
return out
"#;

/// One event of an [`enqueue_batch`].
pub struct EnqueueItem<'a> {
    pub id: &'a str,
    /// The idempotency key, as stored in the entry; it also picks the partition.
    pub key: &'a str,
    pub event_type: &'a str,
    pub received_at_ms: i64,
    pub content_type: &'a str,
    pub headers: &'a str,
    pub body: &'a [u8],
}

/// What Redis did with one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Appended to the stream under this entry id.
    Queued { stream_id: String },
    /// The key was seen before; the id the first one was given.
    Seen { first_id: String },
    /// This event's step failed (such as Redis out of memory); nothing of it stayed.
    Failed { error: String },
}

/// Runs [`ENQUEUE_BATCH_LUA`] for `items`, all of one partition (`keys`) of a source.
pub async fn enqueue_batch(
    conn: &mut impl redis::aio::ConnectionLike,
    script: &redis::Script,
    keys: &SourceKeys,
    dedup_ttl_seconds: u64,
    items: &[&EnqueueItem<'_>],
) -> redis::RedisResult<Vec<EnqueueOutcome>> {
    let mut call = script.key(&keys.stream);
    call.arg(dedup_ttl_seconds);
    for item in items {
        call.key(keys.dedup(item.key))
            .arg(item.id)
            .arg(item.key)
            .arg(item.event_type)
            .arg(item.received_at_ms)
            .arg(item.content_type)
            .arg(item.headers)
            .arg(item.body);
    }
    let replies: Vec<(i64, String)> = call.invoke_async(conn).await?;
    if replies.len() != items.len() {
        return Err(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the batch enqueue answered a different number of events",
        )));
    }
    Ok(replies
        .into_iter()
        .map(|(code, value)| match code {
            1 => EnqueueOutcome::Queued { stream_id: value },
            0 => EnqueueOutcome::Seen { first_id: value },
            _ => EnqueueOutcome::Failed { error: value },
        })
        .collect())
}

/// Replicas that must have a write before it counts (`redis.min_replicas_acked`), and how long
/// to wait for them.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaAcks {
    /// 0: none asked for.
    pub replicas: u32,
    pub timeout: std::time::Duration,
}

impl ReplicaAcks {
    /// From the Redis settings.
    pub fn from_settings(settings: &crate::config::RedisSettings) -> ReplicaAcks {
        ReplicaAcks {
            replicas: settings.min_replicas_acked,
            timeout: std::time::Duration::from_millis(settings.replica_ack_timeout_ms),
        }
    }
}

/// Why [`enqueue_acked`] failed: no connection, or Redis refused or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("no Redis connection: {0}")]
    Connection(String),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// [`enqueue_batch`] per partition of `source` that `items` fall in, each followed, when
/// replicas are asked for, by [`replicated`] on the same connection: the outcomes in the
/// order of `items`, and whether the replicas have them all. The partitions' calls run at
/// once, each on a connection of its own: on a cluster their masters work in parallel, and
/// one Redis takes them in one event-loop turn (one fsync with `appendfsync always`). The
/// check runs also when a batch wrote nothing: a key "seen" may be our own first try,
/// written by a call whose answer was lost, and not on the replicas yet. An error of any
/// partition is the error of all: the caller spools every item, and those queued already
/// are "seen" when drained.
pub async fn enqueue_acked(
    pool: &RedisPool,
    script: &redis::Script,
    source: &Source,
    items: &[EnqueueItem<'_>],
    acks: ReplicaAcks,
) -> Result<(Vec<EnqueueOutcome>, bool), EnqueueError> {
    // Within a window after a change of partitions: keys the previous count's partitions
    // already have are answered from there.
    let mut outcomes = seen_before_the_change(pool, source, items).await?;
    let count = source.routing();
    let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, item) in items.iter().enumerate() {
        if outcomes[i].is_none() {
            by_partition[partition_index(item.key, count)].push(i);
        }
    }
    let calls = by_partition
        .iter()
        .enumerate()
        .filter(|(_, indices)| !indices.is_empty())
        .map(|(p, indices)| async move {
            let mut conn = pool
                .get()
                .await
                .map_err(|e| EnqueueError::Connection(e.to_string()))?;
            let keys = &source.partitions[p];
            let part: Vec<&EnqueueItem<'_>> = indices.iter().map(|&i| &items[i]).collect();
            let ttl = source.config.dedup_ttl_seconds;
            let answers = enqueue_batch(&mut *conn, script, keys, ttl, &part).await?;
            let replicated = acks.replicas == 0
                || replicated(
                    &mut *conn,
                    &keys.replication_marker,
                    acks.replicas,
                    acks.timeout,
                )
                .await?;
            Ok::<_, EnqueueError>((indices, answers, replicated))
        });
    let mut all_replicated = true;
    for call in futures_util::future::join_all(calls).await {
        let (indices, answers, replicated) = call?;
        for (&i, answer) in indices.iter().zip(answers) {
            outcomes[i] = Some(answer);
        }
        all_replicated &= replicated;
    }
    let outcomes: Option<Vec<EnqueueOutcome>> = outcomes.into_iter().collect();
    let outcomes = outcomes.ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "an event of the batch got no answer",
        ))
    })?;
    Ok((outcomes, all_replicated))
}

/// For each item whose key the previous partition count (changed less than a window ago)
/// put in another partition: the first id there, if that partition has the key. One `MGET`
/// per such partition (its de-duplication keys share its slot), all at once.
async fn seen_before_the_change(
    pool: &RedisPool,
    source: &Source,
    items: &[EnqueueItem<'_>],
) -> Result<Vec<Option<EnqueueOutcome>>, EnqueueError> {
    let mut outcomes: Vec<Option<EnqueueOutcome>> = vec![None; items.len()];
    let now = crate::circuit::now_ms();
    let mut by_partition: Vec<(&SourceKeys, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(before) = source.previous_partition_of(item.key, now) else {
            continue;
        };
        match by_partition
            .iter_mut()
            .find(|(k, _)| k.stream == before.stream)
        {
            Some((_, indices)) => indices.push(i),
            None => by_partition.push((before, vec![i])),
        }
    }
    let checks = by_partition.iter().map(|(keys, indices)| async move {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| EnqueueError::Connection(e.to_string()))?;
        let mut mget = redis::cmd("MGET");
        for &i in indices {
            mget.arg(keys.dedup(items[i].key));
        }
        let firsts: Vec<Option<String>> = mget.query_async(&mut *conn).await?;
        Ok::<_, EnqueueError>(indices.iter().copied().zip(firsts).collect::<Vec<_>>())
    });
    for check in futures_util::future::join_all(checks).await {
        for (i, first) in check? {
            outcomes[i] = first.map(|first_id| EnqueueOutcome::Seen { first_id });
        }
    }
    Ok(outcomes)
}

/// Whether `replicas` replicas have every write Redis took before this call: a marker write
/// and `WAIT` in one pipeline. Replication is ordered, so a replica that has the marker has
/// all before it, whichever connection wrote it; and a pipeline run again on a fresh
/// connection (a dropped one) still waits for its own marker, never for nothing.
pub async fn replicated(
    conn: &mut impl redis::aio::ConnectionLike,
    marker: &str,
    replicas: u32,
    timeout: std::time::Duration,
) -> redis::RedisResult<bool> {
    let (acked,): (i64,) = redis::pipe()
        .cmd("SET")
        .arg(marker)
        .arg(1)
        .arg("PX")
        .arg(60_000)
        .ignore()
        .cmd("WAIT")
        .arg(replicas)
        .arg(timeout.as_millis() as u64)
        .query_async(conn)
        .await?;
    Ok(acked >= i64::from(replicas))
}
