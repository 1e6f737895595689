//! The trimmer loop: removes source stream entries every destination and the audit trail are
//! done with.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::DeliverySettings;
use crate::queue;
use crate::source::Source;

/// Trims the source stream of entries every destination is done with and the audit consumer
/// has written, until stopped: the bodies of delivered webhooks do not stay in Redis memory.
/// One replica at a time does it (a lock that lasts an interval): the others would only
/// repeat the same reads.
pub(super) async fn trim_loop(
    source: Arc<Source>,
    pool: queue::RedisPool,
    settings: DeliverySettings,
    max_backlog: u64,
    consumer: String,
    stopping: Rc<Cell<bool>>,
) {
    let every = Duration::from_secs(settings.trim_interval_seconds);
    let lock = format!("{}:trim-lock", source.keys.stream);
    let name = &source.config.name;
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
            let stream = &partition.stream;
            let groups = source.groups();
            match queue::trim_settled(&mut *conn, name, partition, &groups, max_backlog).await {
                Ok(n) if n > 0 => log::debug!("{stream}: trimmed {n} delivered entries"),
                Ok(_) => {}
                Err(e) => log::warn!("source {name}: {stream} was not trimmed: {e}"),
            }
        }
    }
}
