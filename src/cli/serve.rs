//! `hookgate serve`: the API and the workers until SIGTERM or SIGINT.

use crate::config::Settings;
use crate::startup::Application;

/// Serves until a stop signal, then drains (a second signal exits at once).
pub fn run(settings: Settings) -> anyhow::Result<()> {
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
