//! Wiring: builds the pools, actors and HTTP server of one gateway process.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Arbiter};
use actix_http::{HttpService, Protocol};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server, ServerHandle, ServiceResponse};
use actix_web::{web, App, HttpResponse};

use crate::admin::{self, AdminState};
use crate::audit::{self, db, AuditConsumer, AuditLeases};
use crate::config::Settings;
use crate::delivery::Fleet;
use crate::dispatch::{Dispatcher, Landing};
use crate::error::{self, ApiError};
use crate::health::{self, Readiness};
use crate::http_refusals::{RefusalIo, Refusals};
use crate::ingest::{self, IngestState, WorkerDispatcher};
use crate::notify::{Notice, Notifier};
use crate::queue;
use crate::recovery::Recovery;
use crate::redis_circuit::RedisCircuit;
use crate::redis_client::RedisClient;
use crate::redis_durability::DurabilityMonitor;
use crate::reload::Reloader;
use crate::sources::Sources;
use crate::spool;
use crate::stats;
use crate::telemetry::{self, IngestStats};

/// How often each replica re-reads the partition layouts.
const LAYOUT_REFRESH: Duration = Duration::from_secs(5);
/// How often each replica looks for partitions whose data Redis lost.
const RECOVERY_CHECK: Duration = Duration::from_secs(2);

/// A running gateway: its HTTP server and the actors behind it.
pub struct Application {
    port: u16,
    server: Server,
    /// The delivery supervisors, replaced source by source on a reload.
    fleet: Arc<tokio::sync::Mutex<Fleet>>,
    /// What a reload needs (SIGHUP).
    reloader: Reloader,
    /// The threads of the delivery supervisors and the audit consumer.
    arbiters: Vec<Arbiter>,
    /// The audit consumer's leases, given up at shutdown.
    audit_leases: AuditLeases,
}

impl Application {
    /// Builds everything and binds the listener; call [`Application::run_until_stopped`] to serve.
    /// Bind to port 0 to get a free port (tests).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // awc's rustls needs a process-wide crypto provider before the first client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let prometheus = telemetry::prometheus();
        for field in &settings.defaulted_secrets {
            log::warn!("{field} is a shipped default (a ${{...:-default}} fallback or a known placeholder): set a real secret in production");
        }
        let redis_client = Arc::new(RedisClient::new(
            &settings.redis.topology,
            Duration::from_millis(settings.redis.enqueue_timeout_ms),
        )?);
        let redis = queue::pool_of(redis_client.clone(), &settings.redis);
        // Every replica routes each source's webhooks to the partitions agreed in Redis.
        let agreed = queue::agree_layouts(&redis, &settings, settings.redis_bound()).await;
        let sources =
            Sources::from_settings(&settings, &agreed.layouts).map_err(anyhow::Error::msg)?;
        actix_web::rt::spawn(queue::follow_layouts(
            redis.clone(),
            sources.clone(),
            agreed.pending,
            LAYOUT_REFRESH,
        ));
        let postgres = db::pool(&settings.database);

        // Prepare the schema now when PostgreSQL is up; when it is not, ingest still works and
        // the audit consumer prepares it before its first write.
        let url = settings.database.url.clone();
        let prepared = match web::block(move || db::prepare(&url)).await {
            Ok(Ok(applied)) => {
                if applied > 0 {
                    log::info!("database: applied {applied} migrations");
                }
                true
            }
            Ok(Err(e)) => {
                log::warn!("database not ready ({e}); audit rows wait in Redis until it is");
                false
            }
            Err(e) => {
                log::warn!("database preparation did not run: {e}");
                false
            }
        };
        // The audit consumer on a thread of its own, with connections driven there: a
        // replica stopped by its embedder (the tests) stops it too.
        // What Redis loses is queued again from the audit trail.
        actix_web::rt::spawn(
            Recovery {
                redis: redis.clone(),
                postgres: postgres.clone(),
                sources: sources.clone(),
                acks: queue::ReplicaAcks::from_settings(&settings.redis),
                replica: settings.server.replica_id.clone(),
            }
            .watch(RECOVERY_CHECK),
        );
        let mut arbiters = Vec::new();
        let audit_arbiter = Arbiter::new();
        let mut audit_redis = settings.redis.clone();
        audit_redis.pool_size = 2;
        let audit_leases = AuditLeases::new(
            &settings.server.replica_id,
            &settings.redis.key_prefix,
            redis.clone(),
            sources.clone(),
        );
        let consumer = AuditConsumer {
            redis: redis.clone(),
            postgres: postgres.clone(),
            database_url: settings.database.url.clone(),
            prepared: std::cell::Cell::new(prepared),
            sources: sources.clone(),
            leases: audit_leases.clone(),
            settings: settings.audit.clone(),
            known: Default::default(),
            followed: Default::default(),
            standing: Default::default(),
        };
        audit_arbiter.spawn_fn(move || {
            let consumer = match queue::pool(&audit_redis) {
                Ok(redis) => AuditConsumer { redis, ..consumer },
                // Parsed once already at start: the shared pool does as well.
                Err(_) => consumer,
            };
            actix_web::rt::spawn(consumer.run());
        });
        audit_arbiter.spawn(audit::partitions::maintain(
            postgres.clone(),
            settings.audit.retention_days,
            settings.audit.payload_retention_days,
        ));
        arbiters.push(audit_arbiter);

        // One supervisor per source with destinations, each on its own arbiter (thread): a
        // busy or stuck source cannot take another's thread.
        let notifier = Notifier::new(
            sources.clone(),
            settings.notify.clone(),
            queue::ReplicaAcks::from_settings(&settings.redis),
        );
        actix_web::rt::spawn(notifier.clone().run_digests(redis.clone()));
        let mut fleet = Fleet::new(&settings, notifier.clone());
        for source in sources.iter() {
            fleet.start(source);
        }
        let fleet = Arc::new(tokio::sync::Mutex::new(fleet));
        telemetry::config_generation(sources.generation());

        let stats = Arc::new(IngestStats::default());
        let summary_stats = stats.clone();
        let every = Duration::from_secs(settings.server.summary_interval_seconds);
        actix_web::rt::spawn(async move {
            let mut interval = actix_web::rt::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                if let Some(line) = summary_stats.take_summary() {
                    log::info!("{line}");
                }
            }
        });

        // Queue gauges for /metrics, read from Redis (shared by all replicas).
        let gauge_pool = redis.clone();
        let gauge_sources = sources.clone();
        let every = Duration::from_secs(settings.server.metrics_interval_seconds);
        actix_web::rt::spawn(async move {
            let mut interval = actix_web::rt::time::interval(every);
            loop {
                interval.tick().await;
                let Ok(mut conn) = gauge_pool.get().await else {
                    continue;
                };
                match stats::collect(&mut *conn, &gauge_sources).await {
                    Ok(figures) => stats::publish(&figures),
                    Err(e) => log::debug!("queue gauges not refreshed: {e}"),
                }
            }
        });

        let listener = TcpListener::bind(&settings.server.bind)?;
        let port = listener.local_addr()?.port();
        // One Redis circuit for the whole process: every worker's Dispatcher stops waiting for
        // Redis as soon as one of them finds it down.
        let circuit = Arc::new(RedisCircuit::default());
        telemetry::describe_durable_ingest();
        let redis_bound = settings.redis_bound();
        let acks = queue::ReplicaAcks::from_settings(&settings.redis);
        let spool =
            spool::start(&settings, redis.clone(), sources.clone(), circuit.clone()).await?;
        let sources_for_reload = sources.clone();
        let settings_for_reload = settings.clone();
        let ingest_state = web::Data::new(IngestState {
            sources,
            stats,
            // The sender waits for Redis, then for the spool.
            enqueue_timeout: redis_bound
                + if spool.is_some() {
                    spool::SPOOL_MARGIN
                } else {
                    Duration::ZERO
                },
        });
        let admin = web::Data::new(AdminState {
            token: settings.admin_token.clone(),
            key_prefix: settings.redis.key_prefix.clone(),
            redis: redis.clone(),
            postgres: postgres.clone(),
            max_backlog: settings.audit.max_backlog,
            sources: ingest_state.sources.clone(),
        });
        let readiness = web::Data::new(Readiness {
            redis: redis.clone(),
            postgres,
            // Checks Redis's persistence settings in the background and logs what can lose data.
            durability: DurabilityMonitor::spawn(redis_client, &settings, {
                let (notifier, pool) = (notifier.clone(), redis.clone());
                move |from, to| {
                    let (notifier, pool) = (notifier.clone(), pool.clone());
                    actix_web::rt::spawn(async move {
                        notifier.send(&pool, Notice::Failover { from, to }).await;
                    });
                }
            }),
            topology: settings.redis.topology.clone(),
            circuit: circuit.clone(),
            spool: spool.as_ref().map(|s| s.figures.clone()),
        });
        if let Some(spool) = &spool {
            actix_web::rt::spawn(crate::notify::watch_spool(
                notifier.clone(),
                redis.clone(),
                settings.server.replica_id.clone(),
                spool.figures.clone(),
            ));
        }
        // This replica's state, for every replica's GET /api/replicas.
        actix_web::rt::spawn(
            crate::replicas::Reporter {
                redis: redis.clone(),
                prefix: settings.redis.key_prefix.clone(),
                replica: settings.server.replica_id.clone(),
                circuit: circuit.clone(),
                spool: spool.as_ref().map(|s| s.figures.clone()),
                sources: ingest_state.sources.clone(),
            }
            .run(),
        );
        let probe = circuit.clone();
        let probe_pool = redis.clone();
        // One probe key per partition of each source, in its slot, read at each probe (the
        // lanes grow when the layout does); a gateway without sources probes a key of its own.
        let probe_sources = ingest_state.sources.clone();
        let own_key = format!(
            "{}:probe:{}",
            settings.redis.key_prefix, settings.server.replica_id
        );
        let probe_keys = move || {
            let keys: Vec<String> = probe_sources
                .iter()
                .flat_map(|s| {
                    s.lanes()
                        .iter()
                        .map(|p| p.replication_marker.clone())
                        .collect::<Vec<_>>()
                })
                .collect();
            if keys.is_empty() {
                vec![own_key.clone()]
            } else {
                keys
            }
        };
        let outage_notifier = notifier.clone();
        let replica = settings.server.replica_id.clone();
        actix_web::rt::spawn(async move {
            let told = probe_pool.clone();
            let recovered = move |down: Duration, since_ms: u64| {
                let notice = Notice::RedisOutage {
                    replica: replica.clone(),
                    seconds: down.as_secs().max(1),
                    since_ms,
                };
                let (notifier, pool) = (outage_notifier.clone(), told.clone());
                actix_web::rt::spawn(async move { notifier.send(&pool, notice).await });
            };
            probe
                .probe_forever(probe_pool, probe_keys, redis_bound, acks, recovered)
                .await;
        });
        let workers = settings.server.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let mut worker_redis = settings.redis.clone();
        // A batch of a partitioned source takes a connection per partition at once.
        let widest = settings
            .sources
            .iter()
            .map(|s| u32::from(s.partitions))
            .max()
            .unwrap_or(1);
        worker_redis.pool_size = (settings.redis.pool_size / workers as u32).max(widest + 1);
        let app = move || {
            // One Dispatcher and one Redis pool per worker thread: handing a webhook over never
            // crosses threads, and each connection is driven by the thread that uses it.
            let pool = match queue::pool(&worker_redis) {
                Ok(pool) => pool,
                // The URL was parsed once already at start; this cannot differ.
                Err(_) => redis.clone(),
            };
            let landing = Landing {
                redis: pool,
                script: Arc::new(redis::Script::new(queue::ENQUEUE_BATCH_LUA)),
                circuit: circuit.clone(),
                spool: spool.as_ref().map(|s| s.writer.clone()),
                redis_timeout: redis_bound,
                acks,
            };
            let dispatcher = Dispatcher::new(landing).start();
            App::new()
                .app_data(ingest_state.clone())
                .app_data(readiness.clone())
                .app_data(admin.clone())
                // Malformed bodies, query strings and path segments get the JSON error shape.
                .app_data(error::json_config())
                .app_data(error::query_config())
                .app_data(error::path_config())
                .app_data(web::Data::new(WorkerDispatcher(dispatcher)))
                .configure(ingest::routes)
                .configure(health::routes)
                .configure(admin::routes)
                .route(
                    "/metrics",
                    web::get().to(move || async move {
                        prometheus.run_upkeep();
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4")
                            .body(prometheus.render())
                    }),
                )
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::NotFound)
                }))
        };
        let head_timeout = Duration::from_millis(settings.server.request_head_timeout_ms);
        let server = serve(listener, app, head_timeout, settings.server.workers)?;
        log::info!(
            "hookgate {} listening on {} (replica {}, {} sources, config: {})",
            env!("CARGO_PKG_VERSION"),
            settings.server.bind.replace(":0", &format!(":{port}")),
            settings.server.replica_id,
            settings.sources.len(),
            settings.origin
        );
        Ok(Application {
            port,
            server,
            fleet: fleet.clone(),
            reloader: Reloader::new(settings_for_reload, sources_for_reload, fleet),
            arbiters,
            audit_leases,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Takes the threads of the delivery supervisors and the audit consumer, so that an embedder
    /// (the tests) can stop and join them: they outlive the actix System that started them.
    pub fn take_arbiters(&mut self) -> Vec<Arbiter> {
        let mut all = std::mem::take(&mut self.arbiters);
        if let Ok(mut fleet) = self.fleet.try_lock() {
            all.extend(fleet.take_arbiters());
        }
        all
    }

    /// What reloads the configuration (the binary calls it on SIGHUP).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGTERM/SIGINT or the handle), then lets in-flight deliveries
    /// finish (the rest stays pending for other replicas), and gives the audit leases up (rows
    /// not written yet wait in Redis for the next replica's audit consumer).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        // Within the grace period each: what is still in flight after it stays pending.
        self.fleet.lock().await.stop_all().await;
        self.audit_leases.release().await;
        result
    }
}

/// The HTTP server on `listener`, set up as actix-web's `HttpServer::listen` would be, except
/// that each connection is wrapped in [`RefusalIo`] so that the server's own refusals (400,
/// 408, 431) carry the JSON error shape (see `http_refusals`). `workers`: `None` is one per core.
fn serve<F, T, B>(
    listener: TcpListener,
    app: F,
    head_timeout: Duration,
    workers: Option<usize>,
) -> std::io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let local = listener.local_addr()?;
    let refusals = Arc::new(Refusals::new(head_timeout));
    let mut builder = actix_server::Server::build()
        .shutdown_timeout(10)
        // Signals are the binary's to handle: actix-server would stop the whole System right
        // after the HTTP server, before deliveries in flight could finish.
        .disable_signals();
    if let Some(workers) = workers {
        builder = builder.workers(workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder.listen("hookgate-http", listener, move || {
        let shutdown = shutdown.clone();
        let refusals = refusals.clone();
        let http = HttpService::build()
            // Connections finish their request in flight when the server stops.
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            // Longer than the 60 s Nginx keeps idle upstream connections (nginx/nginx.conf), so
            // the proxy never reuses a connection this side is closing at that very moment.
            .keep_alive(Duration::from_secs(75))
            // A slow sender holds a connection this long at most before its first head: 408.
            .client_request_timeout(head_timeout)
            // HttpServer's defaults.
            .client_disconnect_timeout(Duration::from_secs(1))
            .h1_allow_half_closed(true)
            .local_addr(local)
            .finish(map_config(
                app()
                    .into_factory()
                    .map_err(|e: actix_web::Error| e.error_response()),
                // The app reads neither the configured host nor the local address (a request
                // without Host, HTTP/1.0 only, would see "localhost:8080"); HttpServer's
                // AppConfig::new is private.
                |_| AppConfig::default(),
            ));
        fn_service(move |io: tokio::net::TcpStream| {
            let peer = io.peer_addr().ok();
            let io = RefusalIo::new(io, refusals.clone());
            std::future::ready(Ok::<_, actix_http::error::DispatchError>((
                io,
                Protocol::Http1,
                peer,
            )))
        })
        .and_then(http)
    })?;
    Ok(server.run())
}
