//! `hookgate check-config`: the configuration as the gateway would run it, secrets hidden,
//! and what the live Redis's persistence settings make of a 2xx.

use std::time::Duration;

use crate::config::{RedactedUrl, Settings};
use crate::redis_durability::{self, Severity};
use crate::verify::Kind;

/// How long `check-config` waits for Redis before saying it is unreachable.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Prints the validated configuration and its warnings.
pub fn run(settings: &Settings) {
    println!("configuration: {}", settings.origin);
    println!("listen:        {}", settings.server.bind);
    println!("replica id:    {}", settings.server.replica_id);
    println!(
        "redis:         {}, {} (key prefix {})",
        settings.redis.topology.kind(),
        settings.redis.topology,
        settings.redis.key_prefix
    );
    print_durability(settings);
    if settings.redis.min_replicas_acked > 0 {
        println!(
            "replica acks:  {} replica(s) within {} ms after each batch",
            settings.redis.min_replicas_acked, settings.redis.replica_ack_timeout_ms
        );
    }
    let spool = &settings.spool;
    if spool.enabled {
        println!(
            "spool:         {} (at most {} B)",
            spool.dir.display(),
            spool.max_bytes
        );
    } else {
        println!("spool:         disabled (503 when Redis cannot take a webhook in time)");
    }
    println!("postgres:      {}", RedactedUrl(&settings.database.url));
    println!(
        "admin api:     {}",
        if settings.admin_token.is_some() {
            "enabled"
        } else {
            "disabled (HOOKGATE_ADMIN_TOKEN unset)"
        }
    );
    for field in &settings.defaulted_secrets {
        println!("warning:       {field} is a shipped default (a ${{...:-default}} fallback or a known placeholder): set a real secret in production");
    }
    println!("sources:       {}", settings.sources.len());
    for s in &settings.sources {
        let path = if s.path_token.is_some() || s.kind == Kind::Token {
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
            let mut notes = vec![format!("timeout {} ms", d.timeout_ms)];
            if d.secret.is_some() {
                notes.push("signed".into());
            }
            if !d.filter.wants_everything() {
                notes.push("filtered".into());
            }
            if let Some(o) = &d.ordering {
                notes.push(format!("ordered by {} (on_dead {})", o.key, o.on_dead));
            }
            println!("      -> {} {} ({})", d.name, d.url, notes.join(", "));
        }
    }
}

/// Reads the live Redis's settings and prints what a 2xx survives and each finding; an
/// unreachable Redis is said and skipped (the configuration may be checked anywhere).
fn print_durability(settings: &Settings) {
    let checked = actix_web::rt::System::new()
        .block_on(redis_durability::check(&settings.redis, REDIS_TIMEOUT));
    let readings = match checked {
        Ok(readings) => readings,
        Err(e) => {
            println!("durability:    not checked: Redis unreachable ({e})");
            return;
        }
    };
    for m in &readings.masters {
        println!("master:        {}", m.address);
        println!("durability:    {}", m.report.durability);
        for f in &m.report.problems {
            let severity = match f.severity {
                Severity::Error => "error:  ",
                Severity::Warning => "warning:",
            };
            println!("{severity}       {}", f.message);
        }
    }
}
