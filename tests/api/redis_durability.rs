//! A Redis that can drop accepted webhooks (eviction, no persistence) is reported by `/ready`,
//! `/metrics` and `hookgate check-config`; a durable one is not. Each test runs a private
//! `redis-server` with the settings under test: the shared Redis is never reconfigured.

use hookgate::config::RedisTopology;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{eventually, run, spawn_app, Ran, TestApp, TestEnv};
use crate::metrics::{scrape, value};
use crate::redis_server::RedisServer;

const LOSSY: &[&str] = &[
    "--maxmemory-policy",
    "allkeys-lru",
    "--appendonly",
    "no",
    "--save",
    "",
];
const DURABLE: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];

/// A gateway whose Redis is `redis`.
async fn app_on(env: &TestEnv, redis: &RedisServer) -> TestApp {
    let mut settings = env.settings("");
    settings.redis.topology = RedisTopology::Single(redis.url());
    spawn_app(settings).await
}

/// `/ready`'s status and its `redis_durability`, once the first check has answered.
async fn durability(app: &TestApp) -> (u16, Value) {
    eventually(
        Duration::from_secs(20),
        "the durability report in /ready",
        || async {
            let (status, body) = app.get("/ready").await;
            let report = body["redis_durability"].clone();
            (!report.is_null()).then_some((status, report))
        },
    )
    .await
}

/// `(severity, reason)` of each problem of a report.
fn problems(report: &Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .expect("problems is a list")
        .iter()
        .map(|p| {
            (
                p["severity"].as_str().unwrap_or_default().to_string(),
                p["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The gauge of one reason for this Redis.
async fn risk(app: &TestApp, redis: &RedisServer, reason: &str) -> Option<f64> {
    let address = format!("127.0.0.1:{}", redis.port);
    value(
        &scrape(app).await,
        "hookgate_redis_data_loss_risk",
        &[("redis", &address), ("reason", reason)],
    )
}

/// `hookgate check-config` with defaults but for these variables.
async fn check_config(vars: &[(&str, &str)]) -> Ran {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"));
    cmd.arg("check-config")
        .env_remove("HOOKGATE_CONFIG")
        .env_remove("HOOKGATE_MIN_REPLICAS_ACKED")
        .env_remove("HOOKGATE_SPOOL_DIR")
        .envs(vars.iter().copied());
    run(cmd).await
}

#[actix_web::test]
async fn an_evicting_redis_without_persistence_is_reported_by_ready_and_metrics() {
    let redis = RedisServer::start_with(LOSSY);
    let env = TestEnv::new();
    let app = app_on(&env, &redis).await;

    let (status, report) = durability(&app).await;
    // A Redis that can lose data still takes webhooks: /ready stays ready, and says why not safe.
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["maxmemory_policy"], "allkeys-lru");
    assert_eq!(report["appendonly"], false);
    assert_eq!(report["data_loss_risk"], true);
    let found = problems(&report);
    for reason in ["eviction", "no_persistence"] {
        assert!(
            found.contains(&("error".to_string(), reason.to_string())),
            "{reason} missing: {report}"
        );
    }
    let text = report["problems"].to_string();
    assert!(text.contains("an evicted stream is lost work"), "{text}");
    assert!(text.contains("a restart loses everything queued"), "{text}");

    assert_eq!(risk(&app, &redis, "eviction").await, Some(1.0));
    assert_eq!(risk(&app, &redis, "no_persistence").await, Some(1.0));
    assert_eq!(risk(&app, &redis, "too_few_replicas").await, Some(0.0));
}

#[actix_web::test]
async fn noeviction_with_appendfsync_always_has_no_problem() {
    let redis = RedisServer::start_with(DURABLE);
    let env = TestEnv::new();
    let app = app_on(&env, &redis).await;

    let (status, report) = durability(&app).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["maxmemory_policy"], "noeviction");
    assert_eq!(report["appendonly"], true);
    assert_eq!(report["appendfsync"], "always");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["data_loss_risk"], false);
    assert!(
        report["durability"]
            .as_str()
            .is_some_and(|d| d.starts_with("appendfsync always")),
        "{report}"
    );
    for reason in ["eviction", "no_persistence", "too_few_replicas"] {
        assert_eq!(risk(&app, &redis, reason).await, Some(0.0), "{reason}");
    }
}

#[actix_web::test]
async fn a_redis_down_at_start_is_checked_once_it_is_up() {
    let mut redis = RedisServer::start_with(LOSSY);
    redis.shutdown();
    let env = TestEnv::new();
    // Start-up does not wait for the check.
    let app = app_on(&env, &redis).await;
    let (status, body) = app.get("/ready").await;
    // Ready all the same: the spool takes webhooks while Redis is away.
    assert_eq!(
        (status, body["mode"].as_str()),
        (200, Some("spool")),
        "{body}"
    );
    assert!(body["redis_durability"].is_null(), "{body}");

    redis.restart();
    let (_, report) = durability(&app).await;
    assert_eq!(report["data_loss_risk"], true, "{report}");
    assert_eq!(risk(&app, &redis, "eviction").await, Some(1.0));
}

#[actix_web::test]
async fn check_config_prints_what_the_live_redis_can_lose() {
    let lossy = RedisServer::start_with(LOSSY);
    let ran = check_config(&[
        ("REDIS_URL", &lossy.url()),
        ("HOOKGATE_MIN_REPLICAS_ACKED", "1"),
    ])
    .await;
    assert!(ran.ok, "{}{}", ran.stdout, ran.stderr);
    let out = &ran.stdout;
    assert!(
        out.contains("durability:    none — a Redis restart loses everything queued"),
        "{out}"
    );
    for problem in [
        "error:         maxmemory-policy is allkeys-lru",
        "error:         appendonly is no and save is empty",
        "error:         redis.min_replicas_acked is 1 but Redis has 0 connected replica(s)",
    ] {
        assert!(out.contains(problem), "{problem:?} missing from:\n{out}");
    }

    // A managed Redis without CONFIG: unknown, said as a warning, never a crash.
    let managed = RedisServer::start_with(&["--rename-command", "CONFIG", ""]);
    let ran = check_config(&[("REDIS_URL", &managed.url())]).await;
    assert!(ran.ok, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("warning:       cannot check maxmemory-policy, appendonly"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("durability:    unknown"),
        "{}",
        ran.stdout
    );

    // No Redis at all: said, and the rest of the configuration is still printed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let ran = check_config(&[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))]).await;
    assert!(ran.ok, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("durability:    not checked: Redis unreachable"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("sources:       0"), "{}", ran.stdout);
}
