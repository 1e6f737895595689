//! What the gateway logs during a fault test: warnings, errors and panics are kept, to be
//! searched for what must never appear.

use std::sync::Mutex;

static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Recorder;

impl log::Log for Recorder {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            if let Ok(mut all) = LOGGED.lock() {
                all.push(line);
            }
        }
    }
    fn flush(&self) {}
}

/// Starts recording the log (once per process) and forgets what earlier scenarios logged.
pub fn record_logs() {
    if let Ok(mut logged) = LOGGED.lock() {
        logged.clear();
    }
    if let Ok(mut panics) = PANICS.lock() {
        panics.clear();
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = log::set_boxed_logger(Box::new(Recorder));
        log::set_max_level(log::LevelFilter::Warn);
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut all) = PANICS.lock() {
                all.push(info.to_string());
            }
            default(info);
        }));
    });
}

/// Log lines (and panics) that must never appear: the client lost track of the cluster.
pub fn forbidden_log_lines() -> Vec<String> {
    let mut bad: Vec<String> = LOGGED
        .lock()
        .map(|l| {
            l.iter()
                .filter(|line| {
                    let up = line.to_uppercase();
                    up.contains("CROSSSLOT") || up.contains("MOVED") || up.contains("PANICKED")
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    bad.extend(PANICS.lock().map(|p| p.clone()).unwrap_or_default());
    bad
}
