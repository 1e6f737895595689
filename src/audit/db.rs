//! PostgreSQL: the connection pool, creating the database and running the embedded
//! migrations under an advisory lock so that replicas starting together do not race.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseSettings;

/// The migrations of `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// An arbitrary constant naming hookgate's migration lock among the server's advisory locks.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_6761_7465; // "hookgate"

/// A pool of PostgreSQL connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// Why the database could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to PostgreSQL: {}", one_line(.0))]
    Connect(#[from] diesel::ConnectionError),
    #[error("PostgreSQL query failed: {}", one_line(.0))]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("invalid database URL: {0}")]
    Url(String),
}

/// libpq's messages span lines; logs want one.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Adds `connect_timeout` to a URL that has none: libpq waits forever by default, and an
/// unreachable server must not hang start-up or the audit writer.
pub fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&connect_timeout=3")
    } else {
        format!("{url}?connect_timeout=3")
    }
}

/// Builds the pool without connecting, so the gateway starts while PostgreSQL is down.
pub fn pool(settings: &DatabaseSettings) -> PgPool {
    Pool::builder()
        .max_size(settings.pool_size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(2))
        .build_unchecked(ConnectionManager::new(with_connect_timeout(&settings.url)))
}

/// Splits a PostgreSQL URL into (URL of the `postgres` maintenance database, database name).
fn split_database(url: &str) -> Result<(String, String), DbError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let slash = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .ok_or_else(|| DbError::Url("no database name in the URL".into()))?;
    let name = &base[slash + 1..];
    if name.is_empty() {
        return Err(DbError::Url("no database name in the URL".into()));
    }
    let mut admin = format!("{}/postgres", &base[..slash]);
    if let Some(q) = query {
        admin.push('?');
        admin.push_str(q);
    }
    Ok((admin, name.to_string()))
}

/// Whether PostgreSQL answers through `pool` (`SELECT 1`); the error as text otherwise.
pub fn reachable(pool: &PgPool) -> Result<(), String> {
    use diesel::connection::SimpleConnection;
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    conn.batch_execute("SELECT 1").map_err(|e| e.to_string())
}

/// Whether PostgreSQL takes writes through `pool`: it answers, is not a standby and is not
/// read-only (a demoted or read-only server answers `SELECT 1` and refuses every insert).
pub fn writable(pool: &PgPool) -> Result<(), String> {
    #[derive(diesel::QueryableByName)]
    struct Writable {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        writable: bool,
    }
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let answer: Writable = diesel::sql_query(
        "SELECT NOT pg_is_in_recovery() \
         AND current_setting('transaction_read_only') = 'off' AS writable",
    )
    .get_result(&mut conn)
    .map_err(|e| e.to_string())?;
    if answer.writable {
        Ok(())
    } else {
        Err("PostgreSQL is read-only (a standby, or default_transaction_read_only)".into())
    }
}

/// Creates the database of `url` when it does not exist yet.
///
/// A failed connection is not told apart by its message (libpq translates it): the
/// maintenance database is asked whether the database exists instead.
pub fn ensure_database(url: &str) -> Result<(), DbError> {
    let refused = match PgConnection::establish(url) {
        Ok(_) => return Ok(()),
        Err(e @ diesel::ConnectionError::BadConnection(_)) => e,
        Err(e) => return Err(e.into()),
    };
    // Any failure to look further reports the first one: it says what is wrong.
    let Ok((admin_url, name)) = split_database(url) else {
        return Err(refused.into());
    };
    let Ok(mut admin) = PgConnection::establish(&admin_url) else {
        return Err(refused.into());
    };
    if !matches!(database_exists(&mut admin, &name), Ok(false)) {
        return Err(refused.into());
    }
    let quoted = name.replace('"', "\"\"");
    match admin.batch_execute(&format!("CREATE DATABASE \"{quoted}\"")) {
        Ok(()) => {
            log::info!("created database {name}");
            Ok(())
        }
        // Another replica created it a moment ago.
        Err(_) if matches!(database_exists(&mut admin, &name), Ok(true)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether the server has a database called `name`.
fn database_exists(admin: &mut PgConnection, name: &str) -> Result<bool, DbError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let found: Found =
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(name)
            .get_result(admin)?;
    Ok(found.n > 0)
}

/// Creates the database if missing and runs pending migrations under an advisory lock.
pub fn prepare(url: &str) -> Result<usize, DbError> {
    let url = &with_connect_timeout(url);
    ensure_database(url)?;
    let mut conn = PgConnection::establish(url)?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|done| done.len())
        .map_err(|e| DbError::Migration(e.to_string()));
    // The lock is also released when the connection closes, so a failed unlock is harmless.
    let _ = conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_database_name() {
        let (admin, name) = split_database("postgres://u@h:5432/hookgate?sslmode=disable").unwrap();
        assert_eq!(admin, "postgres://u@h:5432/postgres?sslmode=disable");
        assert_eq!(name, "hookgate");
        assert!(split_database("postgres://u@h:5432").is_err());
    }

    #[test]
    fn adds_a_connect_timeout_once() {
        assert_eq!(
            with_connect_timeout("postgres://h/db"),
            "postgres://h/db?connect_timeout=3"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?a=b"),
            "postgres://h/db?a=b&connect_timeout=3"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?connect_timeout=9"),
            "postgres://h/db?connect_timeout=9"
        );
    }
}
