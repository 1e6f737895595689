//! `hookgate serve`: the API and the workers until SIGTERM or SIGINT; SIGHUP reloads the
//! configuration.

use crate::config::Settings;
use crate::reload::Reloader;
use crate::startup::Application;

/// Serves until a stop signal, then drains (a second signal exits at once).
pub fn run(settings: Settings) -> anyhow::Result<()> {
    // Off unless the environment names an OTLP endpoint.
    crate::traces::init(&settings.server.replica_id);
    actix_web::rt::System::new().block_on(async move {
        // Listened for before the (possibly slow) start: a SIGHUP meanwhile is a reload
        // applied once started, not the end of the process.
        let hup = {
            use actix_web::rt::signal::unix::{signal, SignalKind};
            signal(SignalKind::hangup())
                .map_err(|e| log::error!("cannot listen for SIGHUP (no configuration reload): {e}"))
                .ok()
        };
        let app = Application::build(settings).await?;
        let handle = app.handle();
        if let Some(hup) = hup {
            actix_web::rt::spawn(reload_on_sighup(hup, app.reloader()));
        }
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
        crate::traces::flush();
        log::info!("stopped");
        Ok(())
    })
}

/// Reloads the configuration at each SIGHUP, one reload at a time.
async fn reload_on_sighup(mut hup: actix_web::rt::signal::unix::Signal, reloader: Reloader) {
    while hup.recv().await.is_some() {
        log::info!("SIGHUP: reloading the configuration");
        match reloader.reload().await {
            Ok((plan, generation)) if plan.is_empty() => log::info!(
                "configuration reloaded: no source changed (generation {generation})"
            ),
            Ok((plan, generation)) => log::info!(
                "configuration reloaded: generation {generation}; sources added {:?}, removed {:?}, changed {:?}",
                plan.added,
                plan.removed,
                plan.changed
            ),
            Err(e) => log::error!("configuration reload refused, the running one is kept: {e}"),
        }
    }
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
