//! The audit trail's daily partitions: created before rows need them, dropped whole past the
//! retention (no `DELETE` of rows, so retention costs the same at any size).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel::sql_types::{Date as SqlDate, Text};
use time::{Date, Duration, Month, OffsetDateTime};

/// The partitioned tables, each with a partition per UTC day named `<table>_pYYYYMMDD`.
pub const TABLES: [&str; 4] = [
    "webhook_events",
    "event_payloads",
    "deliveries",
    "delivery_attempts",
];

/// The table of payloads, which `audit.payload_retention_days` may empty sooner.
const PAYLOADS: &str = "event_payloads";

/// Days whose partitions a writer knows exist, so that the hot path asks PostgreSQL once per
/// day; one per database (a writer's), shared with the thread that writes.
#[derive(Debug, Clone, Default)]
pub struct KnownDays(Arc<Mutex<BTreeSet<Date>>>);

impl KnownDays {
    /// Forgets every day: a write failed, maybe for a partition another replica's retention
    /// dropped; the next write asks PostgreSQL again.
    pub fn forget_all(&self) {
        if let Ok(mut known) = self.0.lock() {
            known.clear();
        }
    }
}

/// The UTC day of a time.
pub fn day_of(t: OffsetDateTime) -> Date {
    t.to_offset(time::UtcOffset::UTC).date()
}

/// Makes sure the partitions of `days` exist (creating the missing ones), asking only for
/// days `known` does not hold.
pub fn ensure(
    conn: &mut PgConnection,
    known: &KnownDays,
    days: impl IntoIterator<Item = Date>,
) -> QueryResult<()> {
    let wanted: BTreeSet<Date> = days.into_iter().collect();
    let missing: Vec<Date> = match known.0.lock() {
        Ok(known) => wanted.difference(&known).copied().collect(),
        Err(_) => wanted.into_iter().collect(),
    };
    for day in missing {
        // Replicas may create the same day at once: one at a time, under a lock that lasts
        // the transaction.
        conn.transaction(|conn| {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('hookgate-partitions'))")
                .execute(conn)?;
            diesel::sql_query("SELECT hookgate_ensure_partitions($1)")
                .bind::<SqlDate, _>(day)
                .execute(conn)
        })?;
        if let Ok(mut known) = known.0.lock() {
            known.insert(day);
        }
    }
    Ok(())
}

/// When an event with this id was received, give or take an hour: a UUIDv7 carries the time
/// it was made, which is when the webhook arrived. Bounding a lookup by it reads one or two
/// partitions instead of all of them. Another kind of id gets the whole range.
pub fn arrival_window(id: uuid::Uuid) -> (OffsetDateTime, OffsetDateTime) {
    let made = id.get_timestamp().and_then(|t| {
        let (secs, nanos) = t.to_unix();
        OffsetDateTime::from_unix_timestamp(secs as i64)
            .ok()
            .map(|t| t + Duration::nanoseconds(i64::from(nanos)))
    });
    match made {
        Some(t) => (t - Duration::hours(1), t + Duration::hours(1)),
        None => (
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::now_utc() + Duration::days(36_500),
        ),
    }
}

/// The day in a partition's name, `<table>_pYYYYMMDD`.
pub fn parse_day(name: &str) -> Option<Date> {
    let digits = name.rsplit_once("_p")?.1;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..].parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// The days to drop: those wholly older than `retention_days` before `today` (a day is kept
/// while any of its events is younger than the retention).
pub fn expired(days: &BTreeSet<Date>, today: Date, retention_days: u32) -> Vec<Date> {
    let Some(keep_from) = today.checked_sub(Duration::days(i64::from(retention_days))) else {
        return Vec::new();
    };
    days.iter().copied().filter(|d| *d < keep_from).collect()
}

/// What a prune did, or would do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Days whose partitions went (or would go).
    pub days: Vec<Date>,
    /// Rows they held, per table (counted before dropping).
    pub rows: Vec<(String, i64)>,
    /// Later days whose payloads went (audit.payload_retention_days), and how many.
    pub payload_days: Vec<Date>,
    pub payloads: i64,
}

/// Days that have partitions of `parent`, from the catalogue.
pub fn partition_days(conn: &mut PgConnection, parent: &str) -> QueryResult<BTreeSet<Date>> {
    #[derive(QueryableByName)]
    struct Child {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let children: Vec<Child> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = $1",
    )
    .bind::<Text, _>(parent)
    .load(conn)?;
    Ok(children.iter().filter_map(|c| parse_day(&c.name)).collect())
}

/// Drops the partitions of days past `retention_days`, and the payloads' of days past
/// `payload_days` (or only says which, when `dry_run`), and creates those of today and the
/// next two days. One replica at a time (a session lock: detaching concurrently cannot run
/// inside a transaction).
pub fn prune(
    conn: &mut PgConnection,
    retention_days: u32,
    payload_days: Option<u32>,
    dry_run: bool,
) -> QueryResult<Pruned> {
    diesel::sql_query("SELECT pg_advisory_lock(hashtext('hookgate-partitions'))").execute(conn)?;
    let pruned = prune_locked(conn, retention_days, payload_days, dry_run);
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock(hashtext('hookgate-partitions'))")
        .execute(conn);
    let pruned = pruned?;
    unlocked?;
    Ok(pruned)
}

fn prune_locked(
    conn: &mut PgConnection,
    retention_days: u32,
    payload_days: Option<u32>,
    dry_run: bool,
) -> QueryResult<Pruned> {
    let today = day_of(OffsetDateTime::now_utc());
    let mut pruned = Pruned::default();
    let days = partition_days(conn, "webhook_events")?;
    pruned.days = expired(&days, today, retention_days);
    if let Some(keep) = payload_days {
        let with_payloads = partition_days(conn, PAYLOADS)?;
        pruned.payload_days = expired(&with_payloads, today, keep)
            .into_iter()
            .filter(|d| !pruned.days.contains(d))
            .collect();
        for day in &pruned.payload_days {
            pruned.payloads += count_rows(conn, &partition_name(PAYLOADS, *day))?;
        }
    }
    for table in TABLES {
        let mut rows = 0;
        for day in &pruned.days {
            rows += count_rows(conn, &partition_name(table, *day))?;
        }
        pruned.rows.push((table.to_string(), rows));
    }
    if dry_run {
        return Ok(pruned);
    }
    let whole = pruned
        .days
        .iter()
        .flat_map(|d| TABLES.map(|t| (t, partition_name(t, *d))));
    let payloads = pruned
        .payload_days
        .iter()
        .map(|d| (PAYLOADS, partition_name(PAYLOADS, *d)));
    for (parent, child) in whole.chain(payloads).collect::<Vec<_>>() {
        drop_partition(conn, parent, &child)?;
    }
    ensure(
        conn,
        &KnownDays::default(),
        (0..3).filter_map(|n| today.checked_add(Duration::days(n))),
    )?;
    Ok(pruned)
}

/// Detaches `child` from `parent` without blocking the parent's readers and writers
/// (`CONCURRENTLY`), then drops it: a plain `DROP` takes the parent's strongest lock and, queued
/// behind any long query, would hold up every audit write. A detach left half done by an
/// earlier run is finished first.
fn drop_partition(conn: &mut PgConnection, parent: &str, child: &str) -> QueryResult<()> {
    #[derive(QueryableByName)]
    struct Attached {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        pending: bool,
    }
    let attached: Vec<Attached> = diesel::sql_query(
        "SELECT i.inhdetachpending AS pending FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE c.relname = $1 AND p.relname = $2",
    )
    .bind::<Text, _>(child)
    .bind::<Text, _>(parent)
    .load(conn)?;
    match attached.first() {
        Some(a) if a.pending => {
            diesel::sql_query(format!(
                "ALTER TABLE \"{parent}\" DETACH PARTITION \"{child}\" FINALIZE"
            ))
            .execute(conn)?;
        }
        Some(_) => {
            diesel::sql_query(format!(
                "ALTER TABLE \"{parent}\" DETACH PARTITION \"{child}\" CONCURRENTLY"
            ))
            .execute(conn)?;
        }
        None => {}
    }
    diesel::sql_query(format!("DROP TABLE IF EXISTS \"{child}\"")).execute(conn)?;
    Ok(())
}

/// How often each replica applies the retention (and creates the days ahead).
const MAINTAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Applies the retention every hour, for the life of the process; the replicas take turns
/// under the lock, and what one did leaves nothing for the next.
pub async fn maintain(pool: super::PgPool, retention_days: u32, payload_days: Option<u32>) {
    loop {
        let conns = pool.clone();
        let done = actix_web::rt::task::spawn_blocking(move || {
            let mut conn = conns.get().map_err(|e| e.to_string())?;
            prune(&mut conn, retention_days, payload_days, false).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match done {
            Ok(pruned) if !pruned.days.is_empty() || !pruned.payload_days.is_empty() => {
                log::info!(
                    "audit: retention {retention_days} days: dropped the partitions of {} days \
                     ({:?}), and the payloads of {} more days ({} payloads)",
                    pruned.days.len(),
                    pruned.rows,
                    pruned.payload_days.len(),
                    pruned.payloads
                )
            }
            Ok(_) => {}
            Err(e) => log::warn!("audit: retention not applied ({e}); tried again in an hour"),
        }
        actix_web::rt::time::sleep(MAINTAIN_EVERY).await;
    }
}

/// The partition of `table` for `day`.
pub fn partition_name(table: &str, day: Date) -> String {
    format!(
        "{table}_p{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn count_rows(conn: &mut PgConnection, table: &str) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let exists: Vec<Count> = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_class WHERE relname = $1 AND relkind = 'r'",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    if exists.first().map_or(0, |c| c.n) == 0 {
        return Ok(0);
    }
    diesel::sql_query(format!("SELECT count(*) AS n FROM \"{table}\""))
        .get_result::<Count>(conn)
        .map(|c| c.n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u8, d: u8) -> Date {
        Date::from_calendar_date(y, Month::try_from(m).expect("month"), d).expect("date")
    }

    #[test]
    fn a_uuidv7_says_when_its_event_arrived() {
        let before = OffsetDateTime::now_utc();
        let (low, high) = arrival_window(uuid::Uuid::now_v7());
        assert!(low < before && before < high);
        assert!(high - low <= Duration::hours(2));
        let (low, _) = arrival_window(uuid::Uuid::new_v4());
        assert_eq!(low, OffsetDateTime::UNIX_EPOCH);
    }

    #[test]
    fn a_partition_name_holds_its_day() {
        let day = date(2026, 1, 5);
        assert_eq!(
            partition_name("webhook_events", day),
            "webhook_events_p20260105"
        );
        assert_eq!(parse_day("webhook_events_p20260105"), Some(day));
        assert_eq!(
            parse_day("delivery_attempts_p20261231"),
            Some(date(2026, 12, 31))
        );
        assert_eq!(parse_day("webhook_events_p2026010"), None);
        assert_eq!(parse_day("webhook_events_p20261340"), None);
        assert_eq!(parse_day("webhook_events"), None);
    }

    #[test]
    fn days_wholly_past_the_retention_go_the_others_stay() {
        let today = date(2026, 3, 31);
        let days: BTreeSet<Date> = (0..60)
            .map(|n| today - Duration::days(n))
            .chain([today + Duration::days(1)])
            .collect();
        let gone = expired(&days, today, 30);
        assert_eq!(gone.len(), 29, "{gone:?}");
        assert!(gone.iter().all(|d| *d < date(2026, 3, 1)));
        assert_eq!(gone.last(), Some(&date(2026, 2, 28)));
        // Today, the last 30 days and the days ahead stay.
        assert!(!gone.contains(&date(2026, 3, 1)));
        assert!(!gone.contains(&(today + Duration::days(1))));
    }
}
