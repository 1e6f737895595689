//! The C2S and Pluggy registration scripts, against a local stand-in of each API.

use serde_json::{json, Value};

use crate::helpers::run;
use crate::sink::{Behaviour, Sink};

async fn script(name: &str, arg: &str, env: Vec<(&'static str, String)>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR")))
        .arg(arg)
        .envs(env);
    let ran = run(cmd).await;
    (ran.ok, ran.stdout, ran.stderr)
}

#[actix_web::test]
async fn c2s_registration_subscribes_every_lead_action() {
    let api = Sink::start();
    let hook = "https://hooks.example.com/webhooks/c2s/tok";
    let (ok, out, err) = script(
        "register-c2s.sh",
        hook,
        vec![
            ("C2S_API_URL", api.base.clone()),
            ("C2S_API_TOKEN", "c2s-token".into()),
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let calls = api.received("/integration/leads/subscribe");
    let actions: Vec<String> = calls
        .iter()
        .map(|r| {
            assert_eq!(r.header("authorization"), "Bearer c2s-token");
            let body: Value = serde_json::from_slice(&r.body).expect("JSON");
            assert_eq!(body["hook_url"], hook);
            body["hook_action"].as_str().expect("action").to_string()
        })
        .collect();
    assert_eq!(
        actions,
        ["on_create_lead", "on_update_lead", "on_close_lead"]
    );
}

#[actix_web::test]
async fn pluggy_registration_sends_the_secret_header_back() {
    let api = Sink::start();
    api.set("/auth", Behaviour::Json(json!({"apiKey": "api-key-1"})));
    let hook = "https://hooks.example.com/webhooks/pluggy";
    let (ok, out, err) = script(
        "register-pluggy.sh",
        hook,
        vec![
            ("PLUGGY_API_URL", api.base.clone()),
            ("PLUGGY_CLIENT_ID", "id-1".into()),
            ("PLUGGY_CLIENT_SECRET", "client-secret".into()),
            ("PLUGGY_WEBHOOK_SECRET", "hook-secret".into()),
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let auth: Value = serde_json::from_slice(&api.received("/auth")[0].body).expect("JSON");
    assert_eq!(
        auth,
        json!({"clientId": "id-1", "clientSecret": "client-secret"})
    );
    let hooks = api.received("/webhooks");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].header("x-api-key"), "api-key-1");
    let body: Value = serde_json::from_slice(&hooks[0].body).expect("JSON");
    assert_eq!(
        body,
        json!({"event": "all", "url": hook, "headers": {"X-Webhook-Secret": "hook-secret"}})
    );
    assert!(
        !out.contains("hook-secret") && !err.contains("hook-secret"),
        "the secret is not printed"
    );
}
