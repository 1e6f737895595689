//! `hookgate check-config`: the configuration as the gateway would run it, secrets hidden.

use crate::config::Settings;
use crate::verify::Kind;

/// Prints the validated configuration and its warnings.
pub fn run(settings: &Settings) {
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
