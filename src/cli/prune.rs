//! `hookgate prune [--dry-run]`: the audit trail's retention, run once.

use diesel::{Connection, PgConnection};

use crate::audit::{db, partitions};
use crate::config::Settings;

/// Options of `hookgate prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    /// Say what would be dropped, drop nothing.
    #[arg(long)]
    dry_run: bool,
}

impl PruneArgs {
    /// Applies `audit.retention_days` to the database of the configuration.
    pub fn run(&self, settings: &Settings) -> anyhow::Result<()> {
        db::prepare(&settings.database.url)?;
        let mut conn = PgConnection::establish(&db::with_connect_timeout(&settings.database.url))?;
        let days = settings.audit.retention_days;
        let payload_days = settings.audit.payload_retention_days;
        let pruned = partitions::prune(&mut conn, days, payload_days, self.dry_run)?;
        let verb = if self.dry_run {
            "would drop"
        } else {
            "dropped"
        };
        match (pruned.days.first(), pruned.days.last()) {
            (Some(first), Some(last)) => {
                println!(
                    "retention {days} days: {verb} the partitions of {} days ({first} to {last})",
                    pruned.days.len()
                );
                for (table, rows) in &pruned.rows {
                    println!("  {table}: {rows} rows");
                }
            }
            _ => println!("retention {days} days: no partition is older; nothing {verb}"),
        }
        if let Some(keep) = payload_days {
            match (pruned.payload_days.first(), pruned.payload_days.last()) {
                (Some(first), Some(last)) => println!(
                    "payload retention {keep} days: {verb} the payloads of {} more days \
                     ({first} to {last}): {} payloads; their rows stay",
                    pruned.payload_days.len(),
                    pruned.payloads
                ),
                _ => println!("payload retention {keep} days: nothing more {verb}"),
            }
        }
        Ok(())
    }
}
