//! The SQL of the audit trail: writing a batch of event rows and attempts in one
//! transaction, and rolling deliveries up into their events' rows.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{self, Array, Integer, Nullable, Text, Timestamptz};
use time::OffsetDateTime;
use uuid::Uuid;

use super::db::PgPool;
use super::fold::fold_outcomes;
use super::partitions;
use super::row::NewEventRow;
use super::schema::{delivery_attempts, event_payloads, webhook_events};
use crate::event::AttemptRecord;

#[derive(Insertable)]
#[diesel(table_name = delivery_attempts, treat_none_as_default_value = false)]
struct AttemptRow<'a> {
    event_id: Uuid,
    destination: &'a str,
    attempt: i32,
    status_code: Option<i32>,
    duration_ms: i32,
    error: Option<&'a str>,
    attempted_at: OffsetDateTime,
    received_at: OffsetDateTime,
}

/// Rolls the deliveries of the given events up into their `webhook_events` row: the status
/// is the least advanced delivery's (a destination not attempted yet counts as `queued`; one
/// that filtered the event out counts as done, after `delivered`).
/// Rows already up to date are not rewritten. $2 and $3 bound the events' arrival, so that
/// only their partitions are read.
const ROLL_UP_SQL: &str = r#"
UPDATE webhook_events e SET
  status = CASE WHEN d.n < e.destinations THEN 'queued' ELSE d.status END,
  attempts = d.attempts,
  last_error = d.last_error,
  delivered_at = CASE WHEN d.n >= e.destinations AND d.status = 'delivered' THEN d.delivered_at END
FROM (
  SELECT event_id, count(*) AS n,
    (ARRAY['delivering', 'retrying', 'dead', 'delivered', 'filtered'])[min(
      CASE status WHEN 'delivering' THEN 1 WHEN 'retrying' THEN 2 WHEN 'dead' THEN 3
        WHEN 'delivered' THEN 4 ELSE 5 END
    )] AS status,
    max(attempts) AS attempts,
    (array_agg(last_error ORDER BY updated_at DESC) FILTER (WHERE last_error IS NOT NULL))[1] AS last_error,
    max(delivered_at) AS delivered_at
  FROM deliveries WHERE event_id = ANY($1) AND received_at BETWEEN $2 AND $3 GROUP BY event_id
) d
WHERE e.id = d.event_id AND e.received_at BETWEEN $2 AND $3
  AND (e.status, e.attempts, e.last_error, e.delivered_at) IS DISTINCT FROM (
    CASE WHEN d.n < e.destinations THEN 'queued' ELSE d.status END,
    d.attempts,
    d.last_error,
    CASE WHEN d.n >= e.destinations AND d.status = 'delivered' THEN d.delivered_at END
  )
"#;

/// One row per (event, destination) with its latest attempt, unless a later one is there.
const UPSERT_DELIVERIES_SQL: &str = r#"
INSERT INTO deliveries
  (event_id, destination, status, attempts, last_error, last_status_code, updated_at, delivered_at,
   received_at)
SELECT * FROM UNNEST($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (event_id, destination, received_at) DO UPDATE SET
  status = excluded.status,
  attempts = excluded.attempts,
  last_error = excluded.last_error,
  last_status_code = excluded.last_status_code,
  updated_at = excluded.updated_at,
  delivered_at = excluded.delivered_at
WHERE deliveries.updated_at <= excluded.updated_at
"#;

/// Every replica's audit consumer rolls up and commits under this transaction-level advisory
/// lock, taken after its inserts. An event's row and its outcomes may be written by two
/// replicas at once; without the lock each transaction's roll-up could run before the
/// other's commit and miss it, leaving the event's status behind its deliveries for good.
/// With it, whichever transaction rolls up second does so after the first committed, and
/// sees its rows (each statement reads what was committed before it began). The inserts,
/// most of the work, still run side by side.
const WRITE_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtext('hookgate-audit-write'))";

/// Writes a batch in one transaction; writing the same rows again changes nothing. On error
/// nothing is written.
pub(super) fn write_batch(
    pool: &PgPool,
    known: &partitions::KnownDays,
    events: &mut Vec<NewEventRow>,
    attempts: &[AttemptRecord],
) -> Result<(), String> {
    let mut rolled = fold_outcomes(events, attempts);
    // Folded rows too: `deliveries` may already hold a later attempt, written by another
    // batch before this event's row existed (its outcome read by another replica first). The
    // roll-up rewrites only rows that are behind, so a row folded right costs a read.
    rolled.extend(events.iter().map(|e| e.id));
    rolled.sort_unstable();
    rolled.dedup();
    // The arrival times the batch spans: its rows' partitions, and the roll-up's bounds.
    let times = events
        .iter()
        .map(|e| e.received_at)
        .chain(attempts.iter().map(|a| a.received_at));
    let (low, high) = match times.clone().min().zip(times.clone().max()) {
        Some(bounds) => bounds,
        None => return Ok(()),
    };
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    partitions::ensure(&mut conn, known, times.map(partitions::day_of))
        .map_err(|e| e.to_string())?;
    conn.transaction::<_, diesel::result::Error, _>(|conn| {
        if !events.is_empty() {
            insert_payloads(conn, events)?;
        }
        if !events.is_empty() {
            // Rows there already (an earlier try whose acknowledgement was lost, or entries
            // another replica took over) are kept; the roll-up below sets their status.
            insert_events(conn, events)?;
        }
        if !attempts.is_empty() {
            insert_attempts(conn, attempts)?;
        }
        diesel::sql_query(WRITE_LOCK_SQL).execute(conn)?;
        if !rolled.is_empty() {
            roll_up(conn, &rolled, low, high)?;
        }
        Ok(())
    })
    .map_err(|e| {
        // Perhaps a day's partition another replica's retention dropped: ask again next time.
        known.forget_all();
        e.to_string()
    })
}

/// Rolls the deliveries of `ids`, received between `low` and `high`, up into their
/// `webhook_events` rows.
fn roll_up(
    conn: &mut PgConnection,
    ids: &[Uuid],
    low: OffsetDateTime,
    high: OffsetDateTime,
) -> QueryResult<()> {
    diesel::sql_query(ROLL_UP_SQL)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
        .bind::<Timestamptz, _>(low)
        .bind::<Timestamptz, _>(high)
        .execute(conn)
        .map(|_| ())
}

/// COPYs `$rows` into `$table`, keeping the rows that exist already. COPY costs PostgreSQL a
/// fraction of a multi-row INSERT but cannot skip a row that exists; rows exist when an
/// earlier write committed and its acknowledgement was lost (or another replica took its
/// entries over). Then the batch goes again as INSERT ... ON CONFLICT DO NOTHING, in chunks:
/// the COPY ran in a savepoint. A macro: each table's insertable types differ.
macro_rules! copy_keeping_existing {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let conn: &mut PgConnection = $conn;
        let copied = conn.transaction(|conn| {
            diesel::copy_from($table)
                .from_insertable($rows)
                .execute(conn)
        });
        match copied {
            Ok(_) => Ok(()),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => $rows.chunks(INSERT_CHUNK).try_for_each(|chunk| {
                diesel::insert_into($table)
                    .values(chunk)
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .map(|_| ())
            }),
            Err(e) => Err(e),
        }
    }};
}

/// Inserts new event rows; those that exist already are kept.
fn insert_events(conn: &mut PgConnection, events: &Vec<NewEventRow>) -> QueryResult<()> {
    copy_keeping_existing!(conn, webhook_events::table, events)
}

/// Rows per multi-row INSERT: PostgreSQL takes at most 65,535 bound parameters per statement.
const INSERT_CHUNK: usize = 2_000;

/// An event's payload, in the table of its own.
#[derive(Insertable)]
#[diesel(table_name = event_payloads, treat_none_as_default_value = false)]
struct PayloadRow<'a> {
    event_id: Uuid,
    received_at: OffsetDateTime,
    payload: &'a [u8],
}

/// Inserts the payloads of new event rows; those already there are kept.
fn insert_payloads(conn: &mut PgConnection, events: &[NewEventRow]) -> QueryResult<()> {
    let rows: Vec<PayloadRow<'_>> = events
        .iter()
        .map(|e| PayloadRow {
            event_id: e.id,
            received_at: e.received_at,
            payload: &e.payload,
        })
        .collect();
    copy_keeping_existing!(conn, event_payloads::table, &rows)
}

fn insert_attempts(conn: &mut PgConnection, attempts: &[AttemptRecord]) -> QueryResult<()> {
    // Attempt 0 is a destination's `filtered` verdict: a delivery row, but no attempt.
    let rows: Vec<AttemptRow<'_>> = attempts
        .iter()
        .filter(|a| a.attempt > 0)
        .map(|a| AttemptRow {
            event_id: a.event_id,
            destination: &a.destination,
            attempt: a.attempt,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error.as_deref(),
            attempted_at: a.attempted_at,
            received_at: a.received_at,
        })
        .collect();
    // Unique on (event, destination, attempt, time): an outcome written twice (its
    // acknowledgement lost, or taken over from a replica that died) is one row.
    copy_keeping_existing!(conn, delivery_attempts::table, &rows)?;
    // One row per (event, destination): its latest attempt (ON CONFLICT cannot touch a row twice).
    let mut latest: HashMap<(Uuid, &str), &AttemptRecord> = HashMap::new();
    for a in attempts {
        let slot = latest
            .entry((a.event_id, a.destination.as_str()))
            .or_insert(a);
        if a.attempt >= slot.attempt {
            *slot = a;
        }
    }
    // Replicas flush their batches independently: an earlier attempt written after a later
    // one (a failure on one replica, then the success of its retry on another) must not take
    // the row back, hence the WHERE on the time of the attempt.
    let rows: Vec<&AttemptRecord> = latest.into_values().collect();
    diesel::sql_query(UPSERT_DELIVERIES_SQL)
        .bind::<Array<sql_types::Uuid>, _>(rows.iter().map(|a| a.event_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|a| a.destination.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|a| a.delivery_status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Integer>, _>(rows.iter().map(|a| a.attempt).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            rows.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Integer>>, _>(rows.iter().map(|a| a.status_code).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|a| a.attempted_at).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            rows.iter().map(|a| a.delivered_at()).collect::<Vec<_>>(),
        )
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|a| a.received_at).collect::<Vec<_>>())
        .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::BigInt;

    use super::*;
    use crate::audit::db;
    use crate::audit::fixtures::{attempt, new_event_row};
    use crate::config::DatabaseSettings;
    use crate::status::Status;

    /// A database of its own, dropped at the end.
    struct TempDb {
        url: String,
        name: String,
        base: String,
    }

    impl TempDb {
        fn new() -> TempDb {
            let base = std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let name = format!("hookgate_unit_{}", Uuid::new_v4().simple());
            let url = format!("{base}/{name}");
            db::prepare(&url).expect("the test database is created and migrated");
            TempDb { url, name, base }
        }

        fn count(&self, sql: &str) -> i64 {
            #[derive(QueryableByName)]
            struct Count {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let mut conn = PgConnection::establish(&self.url).expect("connects");
            diesel::sql_query(sql)
                .get_result::<Count>(&mut conn)
                .expect("counts")
                .n
        }
    }

    impl TempDb {
        fn pool(&self) -> PgPool {
            db::pool(&DatabaseSettings {
                url: self.url.clone(),
                pool_size: 2,
            })
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            if let Ok(mut conn) = PgConnection::establish(&format!("{}/postgres", self.base)) {
                let _ = diesel::sql_query(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .execute(&mut conn);
            }
        }
    }

    #[test]
    fn an_earlier_attempt_written_late_does_not_take_a_delivery_back() {
        let db = TempDb::new();
        let pool = db.pool();
        let mut events = vec![new_event_row(1)];
        let id = events[0].id;
        write_batch(&pool, &Default::default(), &mut events, &[]).expect("event written");
        let t1 = OffsetDateTime::now_utc();
        let t2 = t1 + time::Duration::seconds(1);
        // The retry's success (another replica) is written first, the first failure after.
        write_batch(
            &pool,
            &Default::default(),
            &mut Vec::new(),
            &[attempt(id, 2, Status::Delivered, t2)],
        )
        .expect("success written");
        write_batch(
            &pool,
            &Default::default(),
            &mut Vec::new(),
            &[attempt(id, 1, Status::Retrying, t1)],
        )
        .expect("failure written");
        assert_eq!(
            db.count(
                "SELECT count(*) AS n FROM deliveries WHERE status = 'delivered' AND attempts = 2"
            ),
            1
        );
        assert_eq!(
            db.count("SELECT count(*) AS n FROM webhook_events WHERE status = 'delivered'"),
            1
        );
        assert_eq!(db.count("SELECT count(*) AS n FROM delivery_attempts"), 2);
    }

    #[test]
    fn an_event_written_after_a_later_outcome_takes_that_outcome() {
        let db = TempDb::new();
        let pool = db.pool();
        let mut events = vec![new_event_row(1)];
        let id = events[0].id;
        let t1 = OffsetDateTime::now_utc();
        let t2 = t1 + time::Duration::seconds(1);
        // Attempt 2 (delivered) is read and written by one replica before the event's row
        // exists; the event and attempt 1 (retrying) come later, together, from another.
        write_batch(
            &pool,
            &Default::default(),
            &mut Vec::new(),
            &[attempt(id, 2, Status::Delivered, t2)],
        )
        .expect("attempt 2 written");
        write_batch(
            &pool,
            &Default::default(),
            &mut events,
            &[attempt(id, 1, Status::Retrying, t1)],
        )
        .expect("event and attempt 1 written");
        assert_eq!(
            db.count(
                "SELECT count(*) AS n FROM webhook_events WHERE status = 'delivered' AND attempts = 2"
            ),
            1
        );
    }

    #[test]
    fn a_batch_written_twice_is_written_once() {
        let db = TempDb::new();
        let pool = db.pool();
        let events = vec![new_event_row(1)];
        let id = events[0].id;
        let attempts = [
            attempt(id, 1, Status::Retrying, OffsetDateTime::now_utc()),
            attempt(id, 2, Status::Delivered, OffsetDateTime::now_utc()),
        ];
        for _ in 0..2 {
            write_batch(&pool, &Default::default(), &mut events.clone(), &attempts)
                .expect("written");
        }
        // And once more with only the attempts, as an outcome taken over from a dead replica.
        write_batch(&pool, &Default::default(), &mut Vec::new(), &attempts[1..]).expect("written");
        assert_eq!(db.count("SELECT count(*) AS n FROM webhook_events"), 1);
        assert_eq!(db.count("SELECT count(*) AS n FROM delivery_attempts"), 2);
        assert_eq!(
            db.count("SELECT count(*) AS n FROM webhook_events WHERE status = 'delivered' AND attempts = 2"),
            1
        );
    }
}
