//! `/health` (the process is up) and `/ready` (a webhook posted now is kept, in Redis or in
//! the spool, and PostgreSQL is reachable).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::audit::PgPool;
use crate::config::RedisTopology;
use crate::queue::RedisPool;
use crate::redis_circuit::{RedisCircuit, RedisMode};
use crate::redis_durability::DurabilityMonitor;
use crate::spool::SpoolFigures;

/// Dependencies that `/ready` checks.
pub struct Readiness {
    pub redis: RedisPool,
    pub postgres: PgPool,
    /// The latest check of Redis's persistence settings, shown in the body (it does not
    /// change the status: a Redis that can lose data still takes webhooks).
    pub durability: Arc<DurabilityMonitor>,
    /// Which topology `/ready` names.
    pub topology: RedisTopology,
    /// Whether webhooks go to Redis or to the spool now.
    pub circuit: Arc<RedisCircuit>,
    /// The spool's figures; None when it is disabled.
    pub spool: Option<Arc<SpoolFigures>>,
}

/// Where this replica puts a webhook now, as `/ready` names it.
fn mode(redis_ok: bool, circuit: RedisMode, spool: Option<&SpoolFigures>) -> &'static str {
    let spooling = spool.is_some_and(SpoolFigures::has_room);
    match (redis_ok && circuit == RedisMode::Up, spooling) {
        (true, _) => "queue",
        (false, true) => "spool",
        (false, false) => "unavailable",
    }
}

/// Registers the health routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(deps: web::Data<Readiness>) -> HttpResponse {
    let limit = Duration::from_secs(2);
    let redis = async {
        let mut conn = deps.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut *conn)
            .await
            .map_err(|e| e.to_string())
    };
    let redis = match actix_web::rt::time::timeout(limit, redis).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out".to_string()),
    };
    let pool = deps.postgres.clone();
    let postgres = web::block(move || crate::audit::db::reachable(&pool));
    let postgres = match actix_web::rt::time::timeout(limit, postgres).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    let status = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    // Ready: a webhook posted now is kept, in Redis or in the spool.
    let mode = mode(redis.is_ok(), deps.circuit.mode(), deps.spool.as_deref());
    let ready = mode != "unavailable" && postgres.is_ok();
    let spool = deps.spool.as_deref().map(|f| {
        json!({
            "events": f.events.load(Ordering::Relaxed),
            "bytes": f.bytes.load(Ordering::Relaxed),
            "max_bytes": f.max_bytes,
        })
    });
    let readings = deps.durability.readings();
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "mode": mode,
        "redis": status(&redis),
        "redis_circuit": deps.circuit.mode().as_str(),
        "postgres": status(&postgres),
        "spool": spool,
        "redis_topology": deps.topology.kind(),
        "redis_masters": readings.as_ref().map(|r| &r.masters),
        "redis_durability": readings.as_ref().and_then(|r| r.worst()),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Why `hookgate health` failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable {
        addr: String,
        reason: std::io::Error,
    },
    #[error("{addr} answered {status_line:?}")]
    Unhealthy { addr: String, status_line: String },
}

/// Asks the local server's `/health`, as a container HEALTHCHECK does: the runtime image has
/// no curl, so the binary checks itself. `bind` is the server's listen address.
pub fn probe(bind: &str, timeout: Duration) -> Result<(), ProbeError> {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    let addr = local_address(bind);
    let unreachable = |reason| ProbeError::Unreachable {
        addr: addr.clone(),
        reason,
    };
    let target: SocketAddr = addr.parse().map_err(|_| {
        unreachable(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not an ip:port address",
        ))
    })?;
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(unreachable)?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(unreachable)?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(unreachable)?;
    let status_line = String::from_utf8_lossy(&head[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if status_line.split(' ').nth(1) == Some("200") {
        Ok(())
    } else {
        Err(ProbeError::Unhealthy { addr, status_line })
    }
}

/// The loopback address that reaches a server bound to `bind` (a wildcard host becomes
/// loopback).
fn local_address(bind: &str) -> String {
    match bind.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => bind.to_string(),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_replica_is_ready_while_redis_or_a_spool_with_room_takes_webhooks() {
        let room = SpoolFigures {
            max_bytes: 10,
            ..SpoolFigures::default()
        };
        let full = SpoolFigures {
            own_bytes: 10.into(),
            max_bytes: 10,
            ..SpoolFigures::default()
        };
        assert_eq!(mode(true, RedisMode::Up, None), "queue");
        assert_eq!(mode(true, RedisMode::Down, Some(&room)), "spool");
        assert_eq!(mode(false, RedisMode::Up, Some(&room)), "spool");
        assert_eq!(mode(false, RedisMode::Down, Some(&full)), "unavailable");
        assert_eq!(mode(false, RedisMode::Down, None), "unavailable");
    }

    use super::*;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        assert_eq!(local_address("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(local_address("[::]:9000"), "[::1]:9000");
        assert_eq!(local_address("10.0.0.5:8080"), "10.0.0.5:8080");
    }

    #[test]
    fn probe_reports_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = probe(&addr, Duration::from_millis(500)).expect_err("nothing listens");
        assert!(err.to_string().contains("cannot reach"), "{err}");
    }
}
