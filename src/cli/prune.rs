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
        let pruned = partitions::prune(&mut conn, days, self.dry_run)?;
        let verb = if self.dry_run {
            "would drop"
        } else {
            "dropped"
        };
        if pruned.days.is_empty() {
            println!("retention {days} days: no partition is older; nothing {verb}");
            return Ok(());
        }
        let (first, last) = (pruned.days[0], pruned.days[pruned.days.len() - 1]);
        println!(
            "retention {days} days: {verb} the partitions of {} days ({first} to {last})",
            pruned.days.len()
        );
        for (table, rows) in &pruned.rows {
            println!("  {table}: {rows} rows");
        }
        Ok(())
    }
}
