//! `hookgate migrate`: the database and its schema, then exit (compose's one-shot service).

use crate::config::Settings;

/// Creates the database if missing and applies the embedded migrations.
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let applied = crate::audit::db::prepare(&settings.database.url)?;
    println!("migrations applied: {applied}");
    Ok(())
}
