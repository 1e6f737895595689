//! `hookgate send`: sign a body as the source's sender would and post it.

use std::path::PathBuf;

use crate::config::Settings;
use crate::send;

/// Arguments of `hookgate send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The source to sign for.
    #[arg(long)]
    source: String,
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The body (default: a sample event).
    #[arg(long, conflicts_with = "file")]
    data: Option<String>,
    /// Read the body from this file.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Content-Type of the body.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// Extra header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Sign as of this unix time instead of now (to test the replay window).
    #[arg(long)]
    at: Option<i64>,
    /// Print the signed request instead of sending it.
    #[arg(long)]
    dry_run: bool,
}

impl SendArgs {
    /// Signs and posts (or prints) the webhook; fails unless the gateway answers 2xx.
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let source = &self.source;
        let config = settings
            .source(source)
            .ok_or_else(|| anyhow::anyhow!("no source named {source:?} in {}", settings.origin))?;
        let body = match (self.data, &self.file) {
            (Some(d), _) => d.into_bytes(),
            (None, Some(f)) => {
                std::fs::read(f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
            }
            (None, None) => send::sample_body(send::unix_now() as u64),
        };
        let mut signed = send::sign(config, &body, self.at.unwrap_or_else(send::unix_now))
            .map_err(anyhow::Error::msg)?;
        for h in &self.headers {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("header {h:?} must be written Name: value"))?;
            signed
                .headers
                .push((k.trim().to_string(), v.trim().to_string()));
        }
        if self.dry_run {
            println!("POST {}{}", self.url.trim_end_matches('/'), signed.path);
            println!("content-type: {}", self.content_type);
            for (k, v) in &signed.headers {
                println!("{k}: {v}");
            }
            println!();
            println!("{}", String::from_utf8_lossy(&body));
            return Ok(());
        }
        let (status, answer) = actix_web::rt::System::new().block_on(send::post(
            &self.url,
            &signed,
            body,
            &self.content_type,
        ))?;
        println!("{status} {answer}");
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("the gateway answered {status}"))
        }
    }
}
