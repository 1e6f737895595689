//! The `hookgate` command line.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use hookgate::config::{process_env, Settings};
use hookgate::startup::Application;
use hookgate::{audit, loadgen, send, telemetry};

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
    /// Load and validate the configuration, print the sources and exit.
    CheckConfig,
    /// Sign a body the way the source's sender would and POST it to the gateway.
    Send {
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
    },
    /// Load generator: pre-signs N webhooks for a source and posts them over C connections.
    Loadgen {
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
    },
    /// Queue figures of a running gateway (admin API).
    Stats {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List events of a running gateway, newest first (admin API).
    Events {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Queue events again: one (--event) or every one matching the filter (admin API).
    Replay {
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
        /// Replay every event: needed when no filter and no --event is given.
        #[arg(long, conflicts_with_all = ["event", "source", "status", "since", "until"])]
        all: bool,
    },
    /// A destination to try deliveries against: answers 200 (NNN to paths ending in
    /// /status/NNN), counts what it gets (GET /stats) and measures the latency of bodies sent
    /// by `loadgen --rate`.
    Sink {
        #[arg(long, default_value = "127.0.0.1:8098")]
        bind: String,
    },
    /// Exit 0 when the local server's /health answers 200 (a container HEALTHCHECK: the
    /// image has no curl).
    Health {
        /// The server's address (default: server.bind of the configuration).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Benchmark baseline: a minimal actix handler doing one Redis EVAL per request.
    #[command(hide = true)]
    BaselineServer {
        #[arg(long, default_value = "127.0.0.1:8099")]
        bind: String,
    },
}

#[derive(clap::Args)]
struct AdminArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin token (else HOOKGATE_ADMIN_TOKEN, else admin.token of the config).
    #[arg(long)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct FilterArgs {
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

impl FilterArgs {
    fn into_filter(self) -> hookgate::client::EventFilter {
        hookgate::client::EventFilter {
            source: self.source,
            status: self.status,
            since: self.since,
            until: self.until,
        }
    }
}

fn admin_client(
    settings: &Settings,
    args: &AdminArgs,
) -> anyhow::Result<hookgate::client::AdminClient> {
    let token = args
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
    Ok(hookgate::client::AdminClient::new(&args.url, &token))
}

fn run_admin(
    work: impl std::future::Future<Output = anyhow::Result<String>>,
) -> anyhow::Result<()> {
    let out = actix_web::rt::System::new().block_on(work)?;
    print!("{out}");
    Ok(())
}

fn main() -> ExitCode {
    telemetry::init_logging();
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
        Command::Serve => serve(settings),
        Command::Migrate => migrate(&settings),
        Command::CheckConfig => {
            check_config(&settings);
            Ok(())
        }
        Command::Send {
            source,
            url,
            data,
            file,
            content_type,
            headers,
            at,
            dry_run,
        } => send_one(
            &settings,
            &source,
            &url,
            data,
            file,
            &content_type,
            &headers,
            at,
            dry_run,
        ),
        Command::Loadgen {
            source,
            url,
            requests,
            connections,
            duplicate_percent,
            rate,
            seconds,
        } => run_loadgen(
            &settings,
            &source,
            &url,
            Load {
                requests,
                connections,
                duplicate_percent,
                rate,
                seconds,
            },
        ),
        Command::Sink { bind } => actix_web::rt::System::new().block_on(loadgen::bench_sink(&bind)),
        Command::Stats { admin } => admin_client(&settings, &admin)
            .and_then(|c| run_admin(async move { hookgate::client::stats(&c).await })),
        Command::Events {
            admin,
            filter,
            limit,
        } => admin_client(&settings, &admin).and_then(|c| {
            let filter = filter.into_filter();
            run_admin(async move { hookgate::client::events(&c, &filter, limit).await })
        }),
        Command::Replay {
            admin,
            filter,
            event,
            destination,
            all,
        } => admin_client(&settings, &admin).and_then(|c| {
            let filter = filter.into_filter();
            run_admin(async move {
                hookgate::client::replay(
                    &c,
                    event.as_deref(),
                    &filter,
                    destination.as_deref(),
                    all,
                    &mut std::io::stderr(),
                )
                .await
            })
        }),
        Command::Health { addr } => {
            let addr = addr.unwrap_or_else(|| settings.server.bind.clone());
            hookgate::health::probe(&addr, std::time::Duration::from_secs(3))
                .map_err(anyhow::Error::from)
        }
        Command::BaselineServer { bind } => {
            let redis_url = settings.redis.url.clone();
            actix_web::rt::System::new().block_on(loadgen::baseline_server(&bind, &redis_url))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        let handle = app.handle();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            log::info!(
                "stopping: finishing requests and deliveries in flight (a second signal exits now)"
            );
            actix_web::rt::spawn(async {
                stop_signal().await;
                std::process::exit(130);
            });
            handle.stop(true).await;
        });
        app.run_until_stopped().await?;
        log::info!("stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen for SIGTERM: {e}");
            let _ = actix_web::rt::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = actix_web::rt::signal::ctrl_c() => {}
    }
}

fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let applied = audit::db::prepare(&settings.database.url)?;
    println!("migrations applied: {applied}");
    Ok(())
}

fn check_config(settings: &Settings) {
    println!("configuration: {}", settings.origin);
    println!("listen:        {}", settings.server.bind);
    println!("replica id:    {}", settings.server.replica_id);
    println!(
        "redis:         {} (key prefix {})",
        redact_url(&settings.redis.url),
        settings.redis.key_prefix
    );
    println!("postgres:      {}", redact_url(&settings.database.url));
    println!(
        "admin api:     {}",
        if settings.admin_token.is_some() {
            "enabled"
        } else {
            "disabled (HOOKGATE_ADMIN_TOKEN unset)"
        }
    );
    for field in &settings.defaulted_secrets {
        println!("warning:       {field} is the ${{...:-default}} fallback of its variable: set the variable in production");
    }
    println!("sources:       {}", settings.sources.len());
    for s in &settings.sources {
        let path = if s.path_token.is_some() || s.kind == hookgate::verify::Kind::Token {
            format!("/webhooks/{}/<token>", s.name)
        } else {
            format!("/webhooks/{}", s.name)
        };
        println!(
            "  - {} (kind {}, {} secret(s)) POST {path}  max body {} B, dedup {} s",
            s.name,
            s.kind,
            s.secrets.len(),
            s.max_body_bytes,
            s.dedup_ttl_seconds
        );
        for d in &s.destinations {
            println!(
                "      -> {} {} (timeout {} ms{})",
                d.name,
                d.url,
                d.timeout_ms,
                if d.secret.is_some() { ", signed" } else { "" }
            );
        }
    }
}

/// Hides the password of a URL for printing.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn send_one(
    settings: &Settings,
    source: &str,
    url: &str,
    data: Option<String>,
    file: Option<PathBuf>,
    content_type: &str,
    extra: &[String],
    at: Option<i64>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let config = settings
        .source(source)
        .ok_or_else(|| anyhow::anyhow!("no source named {source:?} in {}", settings.origin))?;
    let body = match (data, file) {
        (Some(d), _) => d.into_bytes(),
        (None, Some(f)) => {
            std::fs::read(&f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?
        }
        (None, None) => send::sample_body(send::unix_now() as u64),
    };
    let mut signed =
        send::sign(config, &body, at.unwrap_or_else(send::unix_now)).map_err(anyhow::Error::msg)?;
    for h in extra {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("header {h:?} must be written Name: value"))?;
        signed
            .headers
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    if dry_run {
        println!("POST {}{}", url.trim_end_matches('/'), signed.path);
        println!("content-type: {content_type}");
        for (k, v) in &signed.headers {
            println!("{k}: {v}");
        }
        println!();
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let (status, answer) =
        actix_web::rt::System::new().block_on(send::post(url, &signed, body, content_type))?;
    println!("{status} {answer}");
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(anyhow::anyhow!("the gateway answered {status}"))
    }
}

struct Load {
    requests: usize,
    connections: usize,
    duplicate_percent: u8,
    rate: Option<u32>,
    seconds: u64,
}

fn run_loadgen(settings: &Settings, source: &str, url: &str, load: Load) -> anyhow::Result<()> {
    let config = settings
        .source(source)
        .ok_or_else(|| anyhow::anyhow!("no source named {source:?} in {}", settings.origin))?;
    let authority = url
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
    let report = match load.rate {
        Some(rate) => rt.block_on(loadgen::run_rate(
            addr,
            config,
            &authority,
            rate,
            std::time::Duration::from_secs(load.seconds),
            load.connections,
        )),
        None => {
            eprintln!("signing {} requests for source {source}...", load.requests);
            let reqs =
                loadgen::signed_requests(config, &authority, load.requests, load.duplicate_percent)
                    .map_err(anyhow::Error::msg)?;
            rt.block_on(loadgen::run(addr, Arc::new(reqs), load.connections))
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
