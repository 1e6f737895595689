//! `hookgate-tools`: what benchmarks and demos need around the gateway, kept out of the
//! gateway's own binary: a load generator, a destination that counts, and the benchmark's
//! baseline server.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use hookgate::config::{process_env, Settings};

mod baseline;
mod loadgen;
mod sink;

#[derive(Parser)]
#[command(
    name = "hookgate-tools",
    version,
    about = "Load generator, sink and benchmark baseline for hookgate"
)]
struct Cli {
    /// Configuration file (else HOOKGATE_CONFIG, else ./hookgate.toml, else defaults): the
    /// sources loadgen signs for, the Redis of the baseline.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pre-signs N webhooks for a source and posts them over C connections.
    Loadgen(LoadgenArgs),
    /// A destination to try deliveries against: answers 200 (NNN to paths ending in
    /// /status/NNN), counts what it gets (GET /stats) and measures the latency of bodies sent
    /// by `loadgen --rate`.
    Sink(SinkArgs),
    /// Benchmark baseline: a minimal actix handler doing one Redis EVAL per request.
    BaselineServer(BaselineArgs),
}

#[derive(clap::Args)]
struct LoadgenArgs {
    #[arg(long)]
    source: String,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Share of requests that repeat an earlier one byte for byte.
    #[arg(long, default_value_t = 0)]
    duplicate_percent: u8,
    /// Send at this fixed rate (events/s) for --seconds instead of as fast as possible;
    /// bodies carry their send time so a sink can measure end-to-end latency.
    #[arg(long)]
    rate: Option<u32>,
    /// With --rate: how long to send.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[derive(clap::Args)]
struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:8098")]
    bind: String,
}

#[derive(clap::Args)]
struct BaselineArgs {
    #[arg(long, default_value = "127.0.0.1:8099")]
    bind: String,
}

fn main() -> ExitCode {
    hookgate::telemetry::init_logging();
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), &process_env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hookgate-tools: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Loadgen(args) => args.run(&settings),
        Command::Sink(args) => actix_web::rt::System::new().block_on(sink::bench_sink(&args.bind)),
        Command::BaselineServer(args) => actix_web::rt::System::new().block_on(
            baseline::baseline_server(&args.bind, &settings.redis.topology),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate-tools: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl LoadgenArgs {
    fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let source = &self.source;
        let config = settings
            .source(source)
            .ok_or_else(|| anyhow::anyhow!("no source named {source:?} in {}", settings.origin))?;
        let authority = self
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let addr = authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {authority}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let report = match self.rate {
            Some(rate) => rt.block_on(loadgen::run_rate(
                addr,
                config,
                &authority,
                rate,
                std::time::Duration::from_secs(self.seconds),
                self.connections,
            )),
            None => {
                eprintln!("signing {} requests for source {source}...", self.requests);
                let reqs = loadgen::signed_requests(
                    config,
                    &authority,
                    self.requests,
                    self.duplicate_percent,
                )
                .map_err(anyhow::Error::msg)?;
                rt.block_on(loadgen::run(addr, Arc::new(reqs), self.connections))
            }
        };
        println!("{}", report.line());
        println!(
            "figures: rps={:.0} p50_ms={:.3} p99_ms={:.3} ok={} non_2xx={} errors={}",
            report.per_second(),
            report.p50_us as f64 / 1000.0,
            report.p99_us as f64 / 1000.0,
            report.ok,
            report.non_2xx,
            report.errors
        );
        Ok(())
    }
}
