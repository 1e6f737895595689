//! The sequencer of an ordered destination. One replica at a time, holding a lease in Redis,
//! reads the source stream through the destination's group in stream order (the order in
//! which hookgate accepted the events), settles what the destination does not want, and
//! admits the rest in that order ([`queue::ORDER_ADMIT_LUA`]): a key's first event goes to
//! the ready stream, later ones wait behind it. Every replica's reader delivers from the ready
//! stream, so keys flow in parallel while each key has one event in flight.

use std::rc::Rc;
use std::time::{Duration, Instant};

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::worker::{Lane, Origin, Worker, READ_BATCH};
use crate::event::QueuedEvent;
use crate::queue;
use crate::routing::OrderedDelivery;
use crate::source::SourceKeys;

/// How long a sequencer's lease lasts without renewal: the longest a dead sequencer's
/// destination waits before another replica admits its events.
const LEASE: Duration = Duration::from_secs(5);

/// Where the lease stands after an attempt to take or keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    Taken,
    Kept,
    Elsewhere,
}

/// What one round of admission did.
enum Round {
    /// How many entries were read (0: none waiting).
    Read(usize),
    /// The lease was gone when the batch was to be admitted: nothing was.
    LeaseLost,
}

/// The source stream entries of ordered partitions: an ordered source has one partition.
const LANE: Origin = Origin {
    lane: 0,
    retry: false,
};

impl Worker {
    /// Admits events in order while this replica holds the lease, until stopped.
    pub async fn run_sequencer(self: Rc<Self>) {
        let Some(ordering) = self.dest.ordering.clone() else {
            return;
        };
        let token = format!("{}:{}", self.consumer, uuid::Uuid::now_v7().simple());
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let (mut held, mut sweep) = (false, true);
        let mut checked: Option<Instant> = None;
        while !self.stopping.get() {
            if checked.is_none_or(|t| t.elapsed() >= LEASE / 3) {
                match self.lease(&token).await {
                    Ok(Lease::Taken) => {
                        log::info!("{}: this replica admits events in order now", self.name());
                        (held, sweep) = (true, true);
                    }
                    // Sweep again now and then: entries read by a sequencer whose lease ran
                    // out as it read must not wait for the next change of hands.
                    Ok(Lease::Kept) => sweep = true,
                    Ok(Lease::Elsewhere) => held = false,
                    Err(e) => {
                        log::warn!("{}: cannot take the sequencer lease: {e}", self.name());
                        held = false;
                    }
                }
                checked = Some(Instant::now());
            }
            if !held {
                self.pause(LEASE / 3).await;
                continue;
            }
            match self.admit_round(&ordering, &token, &mut sweep).await {
                Ok(Round::Read(0)) => self.pause(poll).await,
                Ok(Round::Read(_)) => self.notify_ready(),
                Ok(Round::LeaseLost) => {
                    log::warn!("{}: the sequencer lease was lost", self.name());
                    (held, checked) = (false, None);
                }
                Err(e) => {
                    if queue::is_nogroup(&e) {
                        let _ = self.ensure_groups(0).await;
                    } else {
                        log::warn!("{}: admitting events failed: {e}", self.name());
                    }
                    // What was read and not admitted is pending: read it again first.
                    sweep = true;
                    self.pause(poll * 4).await;
                }
            }
        }
        if held {
            // Hand over now rather than when the lease runs out.
            if let Ok(mut conn) = self.conn().await {
                let _: redis::RedisResult<i64> = redis::Script::new(queue::ORDER_UNLEASE_LUA)
                    .key(&self.lanes[0].keys.order_sequencer)
                    .arg(&token)
                    .invoke_async(&mut *conn)
                    .await;
            }
        }
    }

    async fn lease(&self, token: &str) -> redis::RedisResult<Lease> {
        let mut conn = self.conn().await?;
        let got: i64 = self
            .scripts
            .lease
            .key(&self.lanes[0].keys.order_sequencer)
            .arg(token)
            .arg(LEASE.as_millis() as u64)
            .invoke_async(&mut *conn)
            .await?;
        Ok(match got {
            2 => Lease::Taken,
            1 => Lease::Kept,
            _ => Lease::Elsewhere,
        })
    }

    /// Reads a batch (first what an earlier sequencer read and did not admit, when
    /// `sweep`), settles what the destination does not want, and admits the rest in order.
    async fn admit_round(
        &self,
        ordering: &OrderedDelivery,
        token: &str,
        sweep: &mut bool,
    ) -> redis::RedisResult<Round> {
        let lane = &self.lanes[0];
        let entries = match self.read_in_order(token, sweep).await {
            Err(e) if e.code() == Some(queue::LEASE_LOST) => return Ok(Round::LeaseLost),
            other => other?,
        };
        if entries.is_empty() {
            return Ok(Round::Read(0));
        }
        let mut admit = Vec::with_capacity(entries.len());
        for entry in &entries {
            let event = match QueuedEvent::parse(entry) {
                Ok(e) => e,
                Err(e) => {
                    log::error!("{}: dropping malformed entry: {e}", self.name());
                    self.ack_only(&entry.id, LANE).await;
                    continue;
                }
            };
            if !self.wants(&event) {
                self.settle_filtered(&entry.id, LANE, &event).await;
                continue;
            }
            let key = ordering.key_of(&event.headers, &event.body);
            admit.push((entry.id.clone(), event.id, key, event.replay_of));
        }
        if admit.is_empty() {
            return Ok(Round::Read(entries.len()));
        }
        let mut inv = self.scripts.admit.prepare_invoke();
        inv.key(&lane.stream)
            .key(&lane.keys.retry_stream)
            .key(&lane.keys.order_holds)
            .key(&lane.keys.order_blocked)
            .key(&lane.keys.order_held)
            .key(&lane.keys.order_sequencer)
            .arg(&self.keys.group)
            .arg(token)
            .arg(&lane.keys.parked_prefix)
            .arg(&lane.keys.order_waiting_prefix);
        for (stream_id, event_id, key, replay_of) in &admit {
            let key = key.as_deref().unwrap_or_default();
            inv.arg(stream_id)
                .arg(event_id)
                .arg(key)
                .arg(SourceKeys::waiting_suffix(key))
                .arg(replay_of.as_deref().unwrap_or_default());
        }
        let mut conn = self.conn().await?;
        let admitted: i64 = inv.invoke_async(&mut *conn).await?;
        Ok(if admitted < 0 {
            Round::LeaseLost
        } else {
            Round::Read(entries.len())
        })
    }

    /// The next entries of the source stream in stream order: those pending (read by a
    /// sequencer that died or failed before admitting them) while `sweep`, else new ones;
    /// `sweep` ends when nothing is left pending.
    async fn read_in_order(
        &self,
        token: &str,
        sweep: &mut bool,
    ) -> redis::RedisResult<Vec<StreamId>> {
        let lane = &self.lanes[0];
        let mut conn = self.conn().await?;
        // Both reads are fenced by the lease: a replica that lost it takes nothing.
        fn fenced<'s>(
            w: &Worker,
            script: &'s redis::Script,
            lane: &Lane,
            token: &str,
        ) -> redis::ScriptInvocation<'s> {
            let mut inv = script.prepare_invoke();
            inv.key(&lane.stream)
                .key(&lane.keys.order_sequencer)
                .arg(token)
                .arg(&w.keys.group)
                .arg(&w.consumer)
                .arg(READ_BATCH);
            inv
        }
        if *sweep {
            // Only sequencers read this stream through the group, one at a time: whatever is
            // pending there is not being worked on, however recently it was read.
            let reply: StreamAutoClaimReply = fenced(self, &self.scripts.sweep, lane, token)
                .invoke_async(&mut *conn)
                .await?;
            if !reply.deleted_ids.is_empty() {
                let _: i64 = redis::cmd("XACK")
                    .arg(&lane.stream)
                    .arg(&self.keys.group)
                    .arg(&reply.deleted_ids)
                    .query_async(&mut *conn)
                    .await?;
            }
            if !reply.claimed.is_empty() {
                return Ok(reply.claimed);
            }
            *sweep = false;
        }
        let reply: Option<StreamReadReply> = fenced(self, &self.scripts.read_in_order, lane, token)
            .invoke_async(&mut *conn)
            .await?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }
}

/// Most waiting events moved per script call when a destination stops being ordered.
const FLUSH_BATCH: usize = 500;

impl Worker {
    /// Lets go of whatever an earlier configuration left waiting behind keys, when this
    /// destination is no longer ordered: its events would otherwise wait for good.
    pub(super) async fn release_left_over_order(&self) -> redis::RedisResult<()> {
        if self.is_ordered() {
            return Ok(());
        }
        let script = redis::Script::new(queue::ORDER_FLUSH_LUA);
        for lane in self.active_lanes() {
            let k = &lane.keys;
            let mut conn = self.conn().await?;
            let mut moved_total = 0;
            loop {
                let keys: Vec<String> = redis::cmd("HKEYS")
                    .arg(&k.order_holds)
                    .query_async(&mut *conn)
                    .await?;
                if keys.is_empty() {
                    break;
                }
                let mut inv = script.prepare_invoke();
                inv.key(&k.order_holds)
                    .key(&k.order_blocked)
                    .key(&k.retry_stream)
                    .key(&k.order_held)
                    .arg(&k.order_waiting_prefix)
                    .arg(&k.parked_prefix)
                    .arg(FLUSH_BATCH);
                for key in &keys {
                    inv.arg(key).arg(SourceKeys::waiting_suffix(key));
                }
                let moved: usize = inv.invoke_async(&mut *conn).await?;
                moved_total += moved;
            }
            if moved_total > 0 {
                log::warn!(
                    "{}: no longer ordered; {moved_total} events that waited behind their key are delivered now",
                    self.name()
                );
            }
        }
        Ok(())
    }
}
