//! `hookgate health`: the container's HEALTHCHECK (the image has no curl).

use crate::config::Settings;

/// Arguments of `hookgate health`.
#[derive(clap::Args)]
pub struct HealthArgs {
    /// The server's address (default: server.bind of the configuration).
    #[arg(long)]
    addr: Option<String>,
}

impl HealthArgs {
    /// Succeeds when the local /health answers 200 within 3 s.
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let addr = self.addr.unwrap_or_else(|| settings.server.bind.clone());
        crate::health::probe(&addr, std::time::Duration::from_secs(3)).map_err(anyhow::Error::from)
    }
}
