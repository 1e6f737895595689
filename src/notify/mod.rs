//! Notifications (`[[notifications]]`): circuits that open and close, digests of dead letters.
//! A notice becomes an event of the built-in source [`NOTIFICATIONS_SOURCE`], one per kind
//! of body, de-duplicated by its occurrence, so that it is delivered like any webhook
//! (retries, dead letters, signatures, the audit trail) and never queued twice for the same
//! occurrence, whichever replicas notice it.

mod digest;
mod message;

use std::sync::Arc;
use std::time::Duration;

pub use digest::{DIGEST_ADD_LUA, DIGEST_TAKE_LUA};
pub use message::Notice;

use crate::circuit::now_ms;
use crate::config::{NotifySettings, NOTIFICATIONS_SOURCE};
use crate::queue::{self, EnqueueItem, RedisPool, ReplicaAcks};
use crate::sources::Sources;

/// Queues notices; clones share it. Does nothing when no notification is configured.
#[derive(Clone)]
pub struct Notifier(Option<Arc<Inner>>);

struct Inner {
    sources: Sources,
    settings: NotifySettings,
    acks: ReplicaAcks,
    enqueue: redis::Script,
    digest_add: redis::Script,
    digest_take: redis::Script,
}

impl Notifier {
    /// A notifier for the process's sources, as the configuration says.
    pub fn new(sources: Sources, settings: NotifySettings, acks: ReplicaAcks) -> Self {
        if !settings.enabled() {
            return Notifier(None);
        }
        Notifier(Some(Arc::new(Inner {
            sources,
            settings,
            acks,
            enqueue: redis::Script::new(queue::ENQUEUE_BATCH_LUA),
            digest_add: redis::Script::new(DIGEST_ADD_LUA),
            digest_take: redis::Script::new(DIGEST_TAKE_LUA),
        })))
    }

    /// Whether notices about `source` are sent (never about the notifications themselves).
    pub fn watches(&self, source: &str) -> bool {
        self.0.is_some() && source != NOTIFICATIONS_SOURCE
    }

    /// Queues `notice`, one event per kind of body; a failure is logged (a notice is not
    /// worth failing a delivery for) and said: false.
    pub async fn send(&self, pool: &RedisPool, notice: Notice) -> bool {
        let Some(inner) = &self.0 else { return true };
        let Some(source) = inner.sources.get(NOTIFICATIONS_SOURCE) else {
            return true;
        };
        let occurrence = notice
            .occurrence()
            .unwrap_or_else(|| format!("{}:{}", notice.event(), uuid::Uuid::now_v7()));
        let bodies: Vec<(String, String, String, Vec<u8>)> = inner
            .settings
            .kinds
            .iter()
            .map(|kind| {
                (
                    uuid::Uuid::now_v7().to_string(),
                    format!("{}:{occurrence}", kind.as_str()),
                    format!("{}:{}", kind.as_str(), notice.event()),
                    notice.body(*kind).to_string().into_bytes(),
                )
            })
            .collect();
        let items: Vec<EnqueueItem<'_>> = bodies
            .iter()
            .map(|(id, key, event_type, body)| EnqueueItem {
                id,
                key,
                event_type,
                received_at_ms: now_ms() as i64,
                content_type: "application/json",
                headers: "{}",
                body,
            })
            .collect();
        match queue::enqueue_acked(pool, &inner.enqueue, &source, &items, inner.acks).await {
            Ok(_) => {
                log::info!("notification queued: {}", notice.text());
                source.wake();
                true
            }
            Err(e) => {
                log::warn!("notification not queued ({e}): {}", notice.text());
                false
            }
        }
    }

    /// Counts a dead letter of `source`/`destination` into its digest (in `digest_key`).
    pub async fn dead_letter(&self, pool: &RedisPool, digest_key: &str, reason: &str) {
        let Some(inner) = &self.0 else { return };
        let reason: String = reason.chars().take(200).collect();
        let added: redis::RedisResult<i64> = match queue::connection(pool).await {
            Ok(mut conn) => {
                inner
                    .digest_add
                    .key(digest_key)
                    .arg(now_ms())
                    .arg(reason)
                    .invoke_async(&mut *conn)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            log::warn!("dead letter not counted for its notification digest: {e}");
        }
    }

    /// Sends the digests whose window is over, every second, until the process ends. Each
    /// digest is taken whole by one replica's script, so it is sent once.
    pub async fn run_digests(self, pool: RedisPool) {
        let Some(inner) = self.0.clone() else { return };
        let window_ms = inner.settings.digest_seconds * 1000;
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for source in inner.sources.iter().filter(|s| !s.config.internal) {
                for d in &source.config.destinations {
                    let key = source.keys.destination(&d.name).dead_digest;
                    let taken = match queue::connection(&pool).await {
                        Ok(mut conn) => {
                            digest::take(&inner.digest_take, &mut *conn, &key, window_ms).await
                        }
                        Err(e) => Err(e),
                    };
                    match taken {
                        Ok(Some(d2)) => {
                            let notice = Notice::DeadLetters {
                                source: source.config.name.clone(),
                                destination: d.name.clone(),
                                count: d2.count,
                                reasons: d2.reasons.clone(),
                                since_ms: d2.since_ms,
                            };
                            if !self.send(&pool, notice).await {
                                // Put back, to be sent at a next look (with what came since).
                                if let Ok(mut conn) = queue::connection(&pool).await {
                                    if let Err(e) = digest::put_back(&mut *conn, &key, &d2).await {
                                        log::warn!(
                                            "dead-letter digest lost ({e}): {} dead",
                                            d2.count
                                        );
                                    }
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => log::debug!("dead-letter digest not read: {e}"),
                    }
                }
            }
        }
    }
}

/// Watches a replica's spool and says when it is empty again after webhooks went through
/// it (how many it moved into Redis meanwhile), until the process ends. A spool that filled
/// and emptied between two looks is seen by what it moved.
pub async fn watch_spool(
    notifier: Notifier,
    pool: RedisPool,
    replica: String,
    figures: Arc<crate::spool::SpoolFigures>,
) {
    if notifier.0.is_none() {
        return;
    }
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let mut tick = actix_web::rt::time::interval(Duration::from_millis(500));
    let mut drained_before = load(&figures.drained);
    // Since when (ms) webhooks go through the spool.
    let mut since: Option<u64> = None;
    loop {
        tick.tick().await;
        let (held, drained) = (load(&figures.events), load(&figures.drained));
        if held > 0 || drained > drained_before {
            since.get_or_insert_with(now_ms);
        }
        if let (Some(since_ms), 0) = (since, held) {
            if drained > drained_before {
                let notice = Notice::SpoolDrained {
                    replica: replica.clone(),
                    webhooks: drained - drained_before,
                    since_ms,
                };
                notifier.send(&pool, notice).await;
                drained_before = drained;
                since = None;
            }
        }
    }
}
