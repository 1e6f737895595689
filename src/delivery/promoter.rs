//! The promoter loop: moves due retries (and deliveries parked by an open circuit) from the
//! schedule back into the retry stream, where the reader finds them.

use std::rc::Rc;
use std::time::Duration;

use super::worker::Worker;
use crate::circuit::now_ms;

/// How often due retries are moved back into work.
const PROMOTE_EVERY: Duration = Duration::from_millis(100);
/// Most retries moved per run of the script.
const PROMOTE_BATCH: u64 = 500;

impl Worker {
    /// Moves due retries back into work until stopped.
    pub async fn run_promoter(self: Rc<Self>) {
        while !self.stopping.get() {
            actix_web::rt::time::sleep(PROMOTE_EVERY).await;
            match self.promote_due().await {
                Ok(n) if n > 0 => self.notify(),
                Ok(_) => {}
                Err(e) => log::debug!("{}: promoting retries failed: {e}", self.name()),
            }
        }
    }

    /// One run of the promote script per lane; how many moved.
    async fn promote_due(&self) -> redis::RedisResult<i64> {
        let mut conn = self.conn().await?;
        let mut moved = 0;
        for lane in self.active_lanes() {
            let n: i64 = self
                .scripts
                .promote
                .key(&lane.keys.retry_schedule)
                .key(&lane.keys.retry_stream)
                .arg(now_ms())
                .arg(PROMOTE_BATCH)
                .arg(&lane.keys.parked_prefix)
                .invoke_async(&mut *conn)
                .await?;
            moved += n;
        }
        Ok(moved)
    }
}
