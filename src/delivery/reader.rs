//! The reader loop: reads new work from the source stream and the retry stream through the
//! destination's consumer group, as far as the breaker, free slots, the process budget and
//! the destination's rate limit allow.

use std::rc::Rc;
use std::time::Duration;

use redis::streams::StreamReadReply;

use super::worker::{Origin, Worker};
use crate::circuit::{Gate, REFRESH};
use crate::queue;

/// How long a busy reader waits for more free slots before reading.
const GATHER: Duration = Duration::from_millis(2);
/// How long a reader waits when the process budget has no room for its source.
const BUDGET_WAIT: Duration = Duration::from_millis(10);

impl Worker {
    fn poll(&self) -> Duration {
        Duration::from_millis(self.settings.poll_interval_ms)
    }

    /// Creates the groups of the lanes from `from` on; how many lanes have them now.
    pub(super) async fn ensure_groups(&self, from: usize) -> redis::RedisResult<usize> {
        let mut conn = self.conn().await?;
        let lanes = self.active_lanes();
        for lane in &lanes[from.min(lanes.len())..] {
            queue::ensure_group(&mut *conn, &lane.stream, &self.keys.group).await?;
            queue::ensure_group(&mut *conn, &lane.keys.retry_stream, &self.keys.group).await?;
        }
        Ok(lanes.len())
    }

    /// Reads new work until stopped.
    pub async fn run_reader(self: Rc<Self>) {
        // Events an earlier, ordered configuration left waiting: released before reading.
        let mut left_over_released = false;
        // Lanes whose groups exist; a layout change may add lanes while this runs.
        let mut groups_ready = 0;
        while !self.stopping.get() {
            if !left_over_released {
                match self.release_left_over_order().await {
                    Ok(()) => left_over_released = true,
                    Err(e) => {
                        log::warn!("{}: cannot release events left ordered: {e}", self.name());
                        self.pause_reader(self.poll() * 4).await;
                        continue;
                    }
                }
            }
            if groups_ready < self.active_lanes().len() {
                match self.ensure_groups(groups_ready).await {
                    Ok(n) => groups_ready = n,
                    Err(e) => {
                        log::warn!("{}: cannot create consumer groups: {e}", self.name());
                        self.pause_reader(self.poll() * 4).await;
                        continue;
                    }
                }
            }
            match self.read_once().await {
                Ok(true) => {}
                Ok(false) => self.pause_reader(self.poll()).await,
                Err(e) if queue::is_nogroup(&e) => {
                    log::warn!("{}: consumer group lost; re-creating it", self.name());
                    groups_ready = 0;
                }
                Err(e) => {
                    log::warn!("{}: reading work failed: {e}", self.name());
                    self.pause_reader(self.poll() * 4).await;
                }
            }
        }
    }

    /// One read; `Ok(false)` when there was nothing to do.
    async fn read_once(self: &Rc<Self>) -> redis::RedisResult<bool> {
        if let Some(started_ms) = self.circuit.late_success() {
            // This replica delivered after the circuit opened elsewhere, unreported while
            // its view was closed: the destination answers, so the circuit closes.
            self.record_circuit(true, started_ms).await;
        }
        let mut conn = self.conn().await?;
        let (want, probe) = match self.circuit.gate(&mut *conn).await? {
            Gate::Wait(d) => {
                drop(conn);
                self.pause_reader(d.min(REFRESH)).await;
                return Ok(true);
            }
            Gate::Probe => (1, true),
            Gate::Pass => (self.room(), false),
        };
        if want == 0 {
            drop(conn);
            self.wait_for_room().await;
            return Ok(true);
        }
        let want = match self.dest.rate_limit_per_second {
            Some(limit) => {
                let grant =
                    queue::take_tokens(&mut *conn, &self.scripts.rate, &self.rate_key, want, limit)
                        .await?;
                if grant.granted == 0 {
                    if probe {
                        // Held while it sleeps, it would keep the circuit half-open for a
                        // whole lease.
                        let _ = self.circuit.give_back_probe(&mut *conn).await;
                    }
                    drop(conn);
                    // A sleep, not a pause: new work must not wake the reader before a token
                    // is there (it would only find none again).
                    actix_web::rt::time::sleep(grant.wait).await;
                    return Ok(true);
                }
                grant.granted
            }
            None => want,
        };
        // Each lane is its own slot on a cluster: one read per lane, starting from a
        // different one each time so that no partition waits behind the others.
        let mut got = 0;
        let lanes = self.active_lanes().len();
        let first = self.next_lane.get() % lanes;
        self.next_lane.set(first + 1);
        for lane in (0..lanes).map(|i| (first + i) % lanes) {
            if got >= want {
                break;
            }
            let keys = &self.lanes[lane];
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(&self.keys.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(want - got)
                .arg("STREAMS");
            if self.sequenced(lane) {
                // The sequencer reads the source stream; deliveries come from the ready one.
                read.arg(&keys.keys.retry_stream).arg(">");
            } else {
                read.arg(&keys.stream)
                    .arg(&keys.keys.retry_stream)
                    .arg(">")
                    .arg(">");
            }
            let reply: StreamReadReply = read.query_async(&mut *conn).await?;
            for key in reply.keys {
                let retry = key.key == keys.keys.retry_stream;
                for entry in key.ids {
                    got += 1;
                    self.spawn_delivery(entry, Origin { lane, retry }, probe);
                }
            }
        }
        if probe && got == 0 {
            // Nothing to probe with: the next event may take it.
            let _ = self.circuit.give_back_probe(&mut *conn).await;
        }
        Ok(got > 0)
    }

    /// Waits while there is no room to start a delivery.
    async fn wait_for_room(&self) {
        if self.budget.room() == 0 {
            // Higher-priority sources hold the process budget: yield to them.
            actix_web::rt::time::sleep(BUDGET_WAIT).await;
            return;
        }
        // Every slot is busy: wait for one to free up, then briefly for a few more, so the
        // next read fetches a batch rather than one entry per round trip.
        if let Ok(p) = self.permits.acquire().await {
            drop(p);
        }
        let some = (self.dest.max_in_flight / 4).max(1) as u32;
        let _ = actix_web::rt::time::timeout(GATHER, self.permits.acquire_many(some)).await;
    }
}
