//! `hookgate check-config`: the configuration as the gateway would run it, secrets hidden.

use crate::config::{RedactedUrl, Settings};
use crate::verify::Kind;

/// Prints the validated configuration and its warnings.
pub fn run(settings: &Settings) {
    println!("configuration: {}", settings.origin);
    println!("listen:        {}", settings.server.bind);
    println!("replica id:    {}", settings.server.replica_id);
    println!(
        "redis:         {} (key prefix {})",
        RedactedUrl(&settings.redis.url),
        settings.redis.key_prefix
    );
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
