//! `hookgate stats`, `events` and `replay`: the admin API of a running gateway.

use crate::client::{self, AdminClient, EventFilter};
use crate::config::Settings;

/// Where the gateway is and how to authenticate.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin token (else HOOKGATE_ADMIN_TOKEN, else admin.token of the config).
    #[arg(long)]
    token: Option<String>,
}

/// Which events.
#[derive(clap::Args)]
pub struct FilterArgs {
    #[arg(long)]
    source: Option<String>,
    /// queued, retrying, dead, delivered
    #[arg(long)]
    status: Option<String>,
    /// RFC 3339, such as 2026-11-22T10:00:00Z
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339
    #[arg(long)]
    until: Option<String>,
}

/// Arguments of `hookgate stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

/// Arguments of `hookgate events`.
#[derive(clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    filter: FilterArgs,
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

/// Arguments of `hookgate replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// One event by id.
    #[arg(long)]
    event: Option<String>,
    /// Only to this destination (default: every destination of the source).
    #[arg(long)]
    destination: Option<String>,
    /// Replay as new events with fresh ids (webhook-id), for receivers that ignore an id they
    /// have seen; each copy is audited under its new id.
    #[arg(long)]
    new_id: bool,
    /// Replay every event: needed when no filter and no --event is given.
    #[arg(long, conflicts_with_all = ["event", "source", "status", "since", "until"])]
    all: bool,
}

impl FilterArgs {
    fn into_filter(self) -> EventFilter {
        EventFilter {
            source: self.source,
            status: self.status,
            since: self.since,
            until: self.until,
        }
    }
}

impl AdminArgs {
    fn client(&self, settings: &Settings) -> anyhow::Result<AdminClient> {
        let token = self
            .token
            .clone()
            .or_else(|| {
                settings
                    .admin_token
                    .as_ref()
                    .map(|t| t.expose().to_string())
            })
            .ok_or_else(|| {
                anyhow::anyhow!("no admin token: pass --token or set HOOKGATE_ADMIN_TOKEN")
            })?;
        Ok(AdminClient::new(&self.url, &token))
    }
}

/// Runs an admin call on a fresh System and prints what it returns.
fn print(work: impl std::future::Future<Output = anyhow::Result<String>>) -> anyhow::Result<()> {
    let out = actix_web::rt::System::new().block_on(work)?;
    print!("{out}");
    Ok(())
}

impl StatsArgs {
    /// Prints one line per destination and the totals.
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let c = self.admin.client(settings)?;
        print(async move { client::stats(&c).await })
    }
}

impl EventsArgs {
    /// Prints the newest matching events.
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let c = self.admin.client(settings)?;
        let filter = self.filter.into_filter();
        let limit = self.limit;
        print(async move { client::events(&c, &filter, limit).await })
    }
}

impl ReplayArgs {
    /// Replays one event, or every matching one with a progress bar on stderr.
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let c = self.admin.client(settings)?;
        let filter = self.filter.into_filter();
        print(async move {
            client::replay(
                &c,
                self.event.as_deref(),
                &filter,
                self.destination.as_deref(),
                self.all,
                self.new_id,
                &mut std::io::stderr(),
            )
            .await
        })
    }
}
