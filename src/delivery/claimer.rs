//! The claimer loop: takes over deliveries another replica left pending past the
//! visibility timeout (it died), and removes consumers long gone from the groups.

use std::rc::Rc;
use std::time::{Duration, Instant};

use redis::streams::{StreamAutoClaimReply, StreamInfoConsumersReply};

use super::worker::{Origin, Worker};
use crate::queue;

impl Worker {
    /// Claims deliveries left pending longer than the visibility timeout (a replica died),
    /// and removes consumers long gone, until stopped.
    pub async fn run_claimer(self: Rc<Self>) {
        let every =
            (self.visibility / 4).clamp(Duration::from_millis(250), Duration::from_secs(10));
        let mut last_cleanup = Instant::now();
        while !self.stopping.get() {
            actix_web::rt::time::sleep(every).await;
            if self.stopping.get() {
                break;
            }
            // An ordered destination's source stream is its sequencer's alone.
            let claimable = self
                .origins()
                .filter(|o| o.retry || !self.sequenced(o.lane))
                .collect::<Vec<_>>();
            for from in claimable {
                if let Err(e) = self.claim(from).await {
                    if !queue::is_nogroup(&e) {
                        log::warn!("{}: claiming pending work failed: {e}", self.name());
                    }
                }
            }
            let cleanup_every =
                Duration::from_secs((self.settings.consumer_idle_seconds / 2).clamp(1, 60));
            if last_cleanup.elapsed() > cleanup_every {
                last_cleanup = Instant::now();
                if let Err(e) = self.remove_gone_consumers().await {
                    log::debug!("{}: consumer cleanup failed: {e}", self.name());
                }
            }
        }
    }

    async fn claim(self: &Rc<Self>, from: Origin) -> redis::RedisResult<()> {
        let stream = self.stream_of(from).to_string();
        let mut start = "0-0".to_string();
        loop {
            let room = self.room();
            if room == 0 {
                return Ok(());
            }
            let mut conn = self.conn().await?;
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(&self.keys.group)
                .arg(&self.consumer)
                .arg(self.visibility.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(room)
                .query_async(&mut *conn)
                .await?;
            if !reply.deleted_ids.is_empty() {
                // Trimmed while pending: nothing left to deliver.
                let _: i64 = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(&self.keys.group)
                    .arg(&reply.deleted_ids)
                    .query_async(&mut *conn)
                    .await?;
            }
            drop(conn);
            if !reply.claimed.is_empty() {
                log::info!(
                    "{}: took over {} pending deliveries",
                    self.name(),
                    reply.claimed.len()
                );
            }
            for entry in reply.claimed {
                self.spawn_delivery(entry, from, false);
            }
            if reply.next_stream_id == "0-0" {
                return Ok(());
            }
            start = reply.next_stream_id;
        }
    }

    async fn remove_gone_consumers(&self) -> redis::RedisResult<()> {
        let idle_ms = self.settings.consumer_idle_seconds * 1000;
        let mut conn = self.conn().await?;
        for from in self.origins() {
            let stream = self.stream_of(from);
            let info: StreamInfoConsumersReply = redis::cmd("XINFO")
                .arg("CONSUMERS")
                .arg(stream)
                .arg(&self.keys.group)
                .query_async(&mut *conn)
                .await?;
            for c in info.consumers {
                if c.name != self.consumer && c.pending == 0 && c.idle as u64 > idle_ms {
                    let _: i64 = redis::cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(stream)
                        .arg(&self.keys.group)
                        .arg(&c.name)
                        .query_async(&mut *conn)
                        .await?;
                    log::info!("{}: removed consumer {} (gone)", self.name(), c.name);
                }
            }
        }
        Ok(())
    }
}
