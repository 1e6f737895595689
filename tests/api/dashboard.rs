//! The dashboard in headless Chromium (Debian's `chromium`, driven by playwright-core from
//! tests/browser; `scripts/dev-services.sh` installs both).

use std::time::Duration;

use hookgate::send::sample_body;

use crate::helpers::{eventually, run, spawn_app, TestEnv};
use crate::sink::{Behaviour, Sink};

const TOKEN: &str = "dashboard-token";

#[actix_web::test]
async fn the_dashboard_replays_a_dead_letter_and_resets_a_circuit() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/gone", Behaviour::Status(410));
    sink.set("/down", Behaviour::Status(500));
    sink.set("/feed", Behaviour::Status(410));
    let toml = format!(
        r#"
[[sources]]
name = "leads"
kind = "github"
secrets = ["l"]
[[sources.destinations]]
name = "crm"
url = "{gone}"

[[sources]]
name = "orders"
kind = "github"
secrets = ["o"]
[sources.retry]
max_attempts = 100
base_delay_ms = 20
max_delay_ms = 50
[sources.circuit]
failure_threshold = 2
open_seconds = 600
[[sources.destinations]]
name = "app"
url = "{down}"
max_in_flight = 1

[[sources]]
name = "items"
kind = "github"
secrets = ["i"]
[[sources.destinations]]
name = "feed"
url = "{feed}"
ordering_key = "/account/id"
on_dead = "block"
"#,
        gone = sink.url("/gone"),
        down = sink.url("/down"),
        feed = sink.url("/feed")
    );
    let mut settings = env.settings(&toml);
    let no_admin = spawn_app(settings.clone()).await;
    assert_eq!(
        no_admin.get_text("/dashboard").await.0,
        404,
        "no dashboard without a token"
    );
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN));
    let app = spawn_app(settings).await;
    let (status, page) = app.get_text("/dashboard").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>hookgate</title>"));
    // Only the page's own script runs (by hash), and no other site may frame it; the browser
    // run below proves the script still runs under this policy.
    let res = awc::Client::default()
        .get(format!("{}/dashboard", app.address))
        .send()
        .await
        .expect("dashboard");
    let csp = res
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    let (_, dead) = app.post_signed("leads", &sample_body(1)).await;
    let dead_id = dead["id"].as_str().expect("id").to_string();
    for i in 0..3 {
        app.post_signed("orders", &sample_body(100 + i)).await;
    }
    // Both of account 1: the first dies and blocks the key; the second waits behind it.
    let (_, blocking) = app.post_signed("items", &sample_body(200)).await;
    let blocking = blocking["id"].as_str().expect("id").to_string();
    let (_, waiting) = app.post_signed("items", &sample_body(201)).await;
    let waiting = waiting["id"].as_str().expect("id").to_string();
    eventually(
        Duration::from_secs(30),
        "a dead letter and an open circuit",
        || async {
            let dead = env
                .count_events(&format!("id = '{dead_id}' AND status = 'dead'"))
                .await
                == 1;
            let (_, c) = app.call("GET", "/api/circuits", Some(TOKEN)).await;
            let open = c["circuits"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["state"] == "open"));
            let (_, b) = app.call("GET", "/api/blocked", Some(TOKEN)).await;
            let blocked = b["blocked"][0]["waiting"] == 1;
            (dead && open && blocked).then_some(())
        },
    )
    .await;
    // The destinations are fixed; the operator acts in the browser.
    sink.set("/gone", Behaviour::Ok);
    sink.set("/down", Behaviour::Ok);
    sink.set("/feed", Behaviour::Ok);
    let dir = format!("{}/tests/browser", env!("CARGO_MANIFEST_DIR"));
    let args = [
        "dashboard.mjs".to_string(),
        app.address.clone(),
        TOKEN.to_string(),
        dead_id.clone(),
        "orders-app".to_string(),
        "1".to_string(),
    ];
    let mut node = std::process::Command::new("node");
    node.args(args).current_dir(dir);
    let ran = run(node).await;
    let (stdout, stderr) = (&ran.stdout, &ran.stderr);
    assert!(
        ran.ok,
        "the browser test failed (scripts/dev-services.sh installs chromium and playwright-core):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("replayed and delivered")
            && stdout.contains("reset and closed")
            && stdout.contains("discarded and free")
            && stdout.contains("on its timeline")
            && stdout.contains("replicas listed"),
        "{stdout}"
    );
    sink.await_events(
        "/feed",
        std::slice::from_ref(&waiting),
        Duration::from_secs(30),
        "the event that waited behind the discarded one",
    )
    .await;
    assert!(
        !sink.delivered("/feed").contains_key(&blocking),
        "the discarded event is not delivered"
    );
    assert_eq!(
        sink.by_event("/gone").get(&dead_id).map(Vec::len),
        Some(2),
        "delivered again by the replay"
    );
}
