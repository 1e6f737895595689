//! The `hookgate` admin commands (stats, events, replay) driving the admin API.

use std::time::Duration;

use crate::admin::{admin_app, post_events, TOKEN};
use crate::helpers::{eventually, run, TestEnv};
use crate::sink::{Behaviour, Sink};

/// Runs the hookgate binary with the environment of a fresh shell; returns (success, stdout, stderr).
async fn cli(args: Vec<String>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"));
    cmd.args(&args)
        .env_remove("HOOKGATE_CONFIG")
        .env_remove("HOOKGATE_ADMIN_TOKEN");
    let ran = run(cmd).await;
    (ran.ok, ran.stdout, ran.stderr)
}

#[actix_web::test]
async fn cli_stats_events_and_replay_drive_the_admin_api() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set("/gone", Behaviour::Status(410));
    let app = admin_app(&env, &sink, Some(TOKEN)).await;
    let dead = post_events(&app, "leads", 4).await;
    env.await_events(
        "source = 'leads' AND status = 'dead'",
        4,
        Duration::from_secs(30),
    )
    .await;
    let admin = |cmd: &str| {
        vec![
            cmd.to_string(),
            "--url".into(),
            app.address.clone(),
            "--token".into(),
            TOKEN.into(),
        ]
    };

    let (ok, out, err) = cli(admin("stats")).await;
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("leads"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols, ["leads", "crm", "0", "0", "0", "4", "0"], "{out}");

    let mut args = admin("events");
    args.extend(["--source", "leads", "--status", "dead"].map(String::from));
    let (ok, out, err) = cli(args).await;
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(dead.iter().all(|id| out.contains(id.as_str())), "{out}");

    sink.set("/gone", Behaviour::Ok);
    let mut args = admin("replay");
    args.extend(["--source", "leads", "--status", "dead"].map(String::from));
    let (ok, out, err) = cli(args).await;
    assert!(ok, "{err}");
    assert!(out.contains("done: 4 of 4 queued again"), "{out}");
    assert!(
        err.contains("[##############################] 4/4"),
        "progress bar: {err}"
    );
    eventually(Duration::from_secs(30), "replayed deliveries", || async {
        let by = sink.by_event("/gone");
        dead.iter()
            .all(|id| by.get(id).map(Vec::len) == Some(2))
            .then_some(())
    })
    .await;

    // With no filter the CLI asks for --all instead of replaying everything.
    let (ok, _, err) = cli(admin("replay")).await;
    assert!(!ok);
    assert!(err.contains("400") && err.contains("all"), "{err}");

    let (ok, _, err) = cli(vec![
        "stats".into(),
        "--url".into(),
        app.address.clone(),
        "--token".into(),
        "wrong".into(),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
}
