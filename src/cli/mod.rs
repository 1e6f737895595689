//! The `hookgate` command line: the gateway and its operator commands, one file each.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{process_env, Settings};

mod admin;
mod check_config;
mod health;
mod migrate;
mod prune;
mod reload;
mod send;
mod serve;

#[derive(Parser)]
#[command(name = "hookgate", version, about = "Self-hosted webhook gateway")]
struct Cli {
    /// Configuration file (else HOOKGATE_CONFIG, else ./hookgate.toml, else defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and workers (the default).
    Serve,
    /// Create the database if missing, run the embedded migrations and exit.
    Migrate,
    /// Drop the audit trail's daily partitions past audit.retention_days, once, and say what
    /// went (replicas also do it every hour).
    Prune(prune::PruneArgs),
    /// Load and validate the configuration, print the sources and exit.
    CheckConfig,
    /// Sign a body the way the source's sender would and POST it to the gateway.
    Send(send::SendArgs),
    /// Queue figures of a running gateway (admin API).
    Stats(admin::StatsArgs),
    /// List events of a running gateway, newest first (admin API).
    Events(admin::EventsArgs),
    /// Queue events again: one (--event) or every one matching the filter (admin API).
    Replay(admin::ReplayArgs),
    /// Ask the gateway running here to reload its configuration (SIGHUP), once the file
    /// loads without a mistake.
    Reload(reload::ReloadArgs),
    /// Exit 0 when the local server's /health answers 200 (a container HEALTHCHECK: the
    /// image has no curl).
    Health(health::HealthArgs),
}

/// Parses the command line, loads the configuration and runs the command.
pub fn run() -> ExitCode {
    crate::telemetry::init_logging();
    // awc's rustls needs a process-wide crypto provider before the first client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), &process_env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hookgate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(settings),
        Command::Migrate => migrate::run(&settings),
        Command::Prune(args) => args.run(&settings),
        Command::CheckConfig => {
            check_config::run(&settings);
            Ok(())
        }
        Command::Send(args) => args.run(&settings),
        Command::Stats(args) => args.run(&settings),
        Command::Events(args) => args.run(&settings),
        Command::Replay(args) => args.run(&settings),
        Command::Health(args) => args.run(&settings),
        Command::Reload(args) => args.run(&settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
