//! The trimmer loop: removes source stream entries every destination is done with, once
//! their audit rows are known to be written.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{backfill, PgPool};
use crate::config::DeliverySettings;
use crate::queue;
use crate::source::Source;

/// Trims the source stream of entries every destination is done with, until stopped: the
/// bodies of delivered webhooks do not stay in Redis memory. One replica at a time does it
/// (a lock that lasts an interval): the others would only repeat the same reads.
pub(super) async fn trim_loop(
    source: Arc<Source>,
    pool: queue::RedisPool,
    settings: DeliverySettings,
    postgres: PgPool,
    settle: Duration,
    consumer: String,
    stopping: Rc<Cell<bool>>,
) {
    let every = Duration::from_secs(settings.trim_interval_seconds);
    let lock = format!("{}:trim-lock", source.keys.stream);
    let name = &source.config.name;
    let mut recheck = Vec::new();
    while !stopping.get() {
        actix_web::rt::time::sleep(every).await;
        let mut conn = match pool.get().await {
            Ok(conn) => conn,
            Err(e) => {
                log::warn!("source {name}: no Redis connection to trim: {e}");
                continue;
            }
        };
        let mine: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&lock)
            .arg(&consumer)
            .arg("NX")
            .arg("PX")
            .arg((every.as_millis() as u64).saturating_sub(100).max(100))
            .query_async(&mut *conn)
            .await;
        if !matches!(mine, Ok(Some(_))) {
            continue;
        }
        for partition in source.lanes() {
            let trimmed = backfill::trim_delivered(
                &mut *conn,
                &postgres,
                &source,
                partition,
                settle,
                &mut recheck,
            )
            .await;
            let stream = &partition.stream;
            match trimmed {
                Ok(n) if n > 0 => log::debug!("{stream}: trimmed {n} delivered entries"),
                Ok(_) => {}
                Err(e) => log::warn!("source {name}: {stream} was not trimmed: {e}"),
            }
        }
    }
}
