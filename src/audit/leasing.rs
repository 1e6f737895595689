//! How an audit consumer keeps its leases: renewing those it holds, taking free ones up to a
//! fair share of the partitions, giving the excess up when other replicas join, giving all up
//! when its writes fail or it stops, and moving each partition's cursor after a commit.

use std::time::{Duration, Instant};

use super::batch::ReadEvent;
use super::consumer::AuditConsumer;
use super::lanes::{fair_share, lease_step, to_give, Hold, Lane, LeaseStep, Sharing, Standing};
use crate::queue::{self, AuditLease};

impl AuditConsumer {
    /// Renews the leases this replica holds and tries to take free ones, each a third of a
    /// lease's life after the last time: up to a fair share of the partitions among the
    /// consumers able to write, none while standing by after a failed write. Past its share it gives the
    /// excess up. A lease found lost drops what was read under it. Stopping, it gives every
    /// lease up and says so.
    pub(super) async fn keep_leases(
        &self,
        lanes: &mut [Lane],
        held: &mut Vec<ReadEvent>,
    ) -> redis::RedisResult<()> {
        let standing = self.standing.get();
        if self.leases.stopping() {
            if !standing.left {
                self.give_up(lanes, held).await;
                self.standing.set(Standing {
                    left: true,
                    ..self.standing.get()
                });
            }
            self.leases.released.notify_one();
            return Ok(());
        }
        let every = Duration::from_millis(self.lease_ms() / 3);
        if !lanes.iter().any(|l| l.check_due(every)) {
            return Ok(());
        }
        let token = &self.leases.token;
        let mut standing = standing;
        let probe_due = standing.probe_after.is_none_or(|t| Instant::now() >= t);
        if !standing.writes_ok && probe_due {
            standing.writes_ok = self.probe().await;
            self.standing.set(standing);
        }
        let mut conn = queue::connection(&self.redis).await?;
        // The consumers able to write share the partitions: one whose writes fail stops
        // reporting, and after a lease's life and a half the others take its share too.
        let report = standing.writes_ok.then_some(token.as_str());
        let window = self.lease_ms() * 3 / 2;
        // Not known this time: as last time (guessing 1 would take every free lease).
        let live = queue::audit_writers(&mut *conn, &self.leases.key_prefix, report, window)
            .await
            .unwrap_or_else(|e| {
                log::debug!("audit: writers not reported or counted ({e}); as last time");
                standing.writers.max(1)
            });
        let share = fair_share(lanes.len(), live);
        let mut ours = lanes.iter().filter(|l| l.held()).count();
        let mut give = to_give(standing.writers, live, ours, share, standing.to_give);
        let standing_by = !standing.writes_ok;
        let lease = Duration::from_millis(self.lease_ms());
        let mut failed = None;
        for (i, lane) in lanes.iter_mut().enumerate() {
            if self.leases.stopping() {
                break; // The next round gives everything up.
            }
            if !lane.check_due(every) {
                continue;
            }
            let was_held = lane.held();
            let sharing = Sharing {
                share,
                ours,
                to_give: give,
                standing_by,
            };
            let yielded = lane.yielded_at.is_some_and(|t| t.elapsed() < lease);
            match lease_step(was_held, lane.seen_free, yielded, sharing) {
                LeaseStep::Renew | LeaseStep::Take => {}
                LeaseStep::Leave => {
                    lane.hold = Hold::Elsewhere(Some(Instant::now()));
                    continue;
                }
                LeaseStep::Peek => {
                    let free = queue::audit_lease_free(&mut *conn, &lane.keys).await;
                    lane.seen_free = free.unwrap_or(false);
                    lane.hold = Hold::Elsewhere(Some(Instant::now()));
                    continue;
                }
                LeaseStep::GiveUp => {
                    if let Err(e) = queue::audit_unlease(&mut *conn, &lane.keys, token).await {
                        log::warn!(
                            "audit: {}: the lease was not given up: {e}",
                            lane.keys.stream
                        );
                    }
                    log::info!(
                        "audit: {}: left to another replica ({live} consumers share the \
                         partitions)",
                        lane.keys.stream
                    );
                    lane.lose(i, held);
                    lane.yielded_at = Some(Instant::now());
                    (ours, give) = (ours - 1, give - 1);
                    continue;
                }
            }
            lane.seen_free = false;
            match queue::audit_lease(&mut *conn, &lane.keys, token, self.lease_ms()).await {
                Ok(AuditLease::Kept { .. }) if was_held => lane.hold = Hold::Held(Instant::now()),
                // Believed lost (a commit refused by a Redis that came back) and ours after
                // all: start again from the cursor, as newly taken.
                Ok(AuditLease::Kept { events, outcomes }) => {
                    lane.take(events, outcomes);
                    ours += 1;
                }
                Ok(AuditLease::Taken { events, outcomes }) => {
                    if was_held {
                        // Redis lost the lease (restarted empty, failed over): start over
                        // from the cursor it has.
                        log::warn!(
                            "audit: {}: the lease was gone; reading from the cursor Redis has",
                            lane.keys.stream
                        );
                    } else {
                        log::info!(
                            "audit: {}: this replica writes the partition to the audit trail now",
                            lane.keys.stream
                        );
                        ours += 1;
                    }
                    held.retain(|e| e.lane != i);
                    lane.take(events, outcomes);
                }
                Ok(AuditLease::Elsewhere) => {
                    if was_held {
                        log::warn!(
                            "audit: {}: another replica took the lease over",
                            lane.keys.stream
                        );
                        ours -= 1;
                    }
                    lane.lose(i, held);
                }
                Err(e) => failed = Some(e),
            }
        }
        self.standing.set(Standing {
            writers: live,
            to_give: give,
            ..standing
        });
        metrics::gauge!("hookgate_audit_partitions_held").set(ours as f64);
        match failed {
            Some(e) if ours == 0 => Err(e),
            _ => Ok(()),
        }
    }

    /// Gives up every lease this replica holds and leaves the writers (its writes fail, or it
    /// stops), so that the others take the partitions at once.
    pub(super) async fn give_up(&self, lanes: &mut [Lane], held: &mut Vec<ReadEvent>) {
        let mut conn = queue::connection(&self.redis).await.ok();
        for (i, lane) in lanes.iter_mut().enumerate() {
            if !lane.held() {
                continue;
            }
            if let Some(conn) = &mut conn {
                let given = queue::audit_unlease(&mut **conn, &lane.keys, &self.leases.token).await;
                if let Err(e) = given {
                    // It runs out by itself.
                    log::debug!(
                        "audit: {}: the lease was not given up: {e}",
                        lane.keys.stream
                    );
                }
            }
            lane.lose(i, held);
        }
        // Counted among the writers no more: the others' share covers its partitions at once.
        if let Some(conn) = &mut conn {
            let left =
                queue::audit_writer_leave(&mut **conn, &self.leases.key_prefix, &self.leases.token);
            if let Err(e) = left.await {
                log::debug!("audit: still counted as a writer: {e}");
            }
        }
        self.standing.set(Standing {
            to_give: 0,
            ..self.standing.get()
        });
        metrics::gauge!("hookgate_audit_partitions_held").set(0.0);
    }

    /// Whether PostgreSQL answers now (on the blocking pool, at the consumer's priority),
    /// with the database prepared (created and migrated) if it was not yet.
    async fn probe(&self) -> bool {
        let (pool, nice) = (self.postgres.clone(), self.settings.nice);
        let unprepared = (!self.prepared.get()).then(|| self.database_url.clone());
        let answered = actix_web::rt::task::spawn_blocking(move || {
            super::background::lower_priority(nice);
            if let Some(url) = unprepared {
                super::db::prepare(&url).map_err(|e| e.to_string())?;
            }
            super::db::writable(&pool)
        })
        .await;
        match answered {
            Ok(Ok(())) => {
                self.prepared.set(true);
                true
            }
            Ok(Err(e)) => {
                log::debug!("audit: PostgreSQL not reached, no partition taken: {e}");
                false
            }
            Err(_) => false,
        }
    }

    /// Moves the cursor of every partition this replica holds up to what is written: the
    /// first event held back, else the first entry not read. A lease found lost drops what
    /// was read under it (its new holder reads it again). A partition whose commit fails (its
    /// master failing over) is left for the next round; the others still move.
    pub(super) async fn commit(
        &self,
        lanes: &mut [Lane],
        held: &mut Vec<ReadEvent>,
    ) -> redis::RedisResult<()> {
        if self.leases.stopping() {
            // The leases are being given up: a commit could take one back (its cursor is
            // where this consumer left it) just before the process exits. What was written
            // is read and written again by the next holder, to no effect.
            return Ok(());
        }
        let mut conn = None;
        for (i, lane) in lanes.iter_mut().enumerate() {
            if !lane.held() {
                continue;
            }
            let events = queue::first_unwritten(
                lane.events_from,
                held.iter().filter(|e| e.lane == i).map(|e| e.entry),
            );
            let to = (events, lane.outcomes_from);
            if to == lane.committed {
                continue;
            }
            let conn = match &mut conn {
                Some(conn) => conn,
                None => conn.insert(queue::connection(&self.redis).await?),
            };
            let moved = queue::audit_commit(
                &mut **conn,
                &lane.keys,
                &self.leases.token,
                self.lease_ms(),
                lane.committed,
                to,
            )
            .await;
            match moved {
                // The check timer stays: checks (reporting, the share) go on under traffic.
                Ok(true) => lane.committed = to,
                Ok(false) => {
                    if !self.leases.stopping() {
                        log::warn!(
                            "audit: {}: another replica took the lease over",
                            lane.keys.stream
                        );
                    }
                    lane.lose(i, held);
                }
                // Written, the cursor not moved: read again later, written again to no effect.
                Err(e) => log::warn!("audit: {}: written rows not marked: {e}", lane.keys.stream),
            }
        }
        Ok(())
    }
}
