//! Routing: destinations that want only some events (`event_types`, `filter`) and ordered
//! delivery per key (`ordering_key`), against real Redis, PostgreSQL and HTTP sinks.

use std::time::Duration;

use hookgate::send::unix_now;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, Signed, TestApp, TestEnv};
use crate::sink::Sink;

const TOKEN: &str = "routing-admin-token";

/// Posts a GitHub-signed webhook of `event` type; returns its id.
async fn post_github(app: &TestApp, source: &str, event: &str, body: &Value) -> String {
    let config = app.source(source);
    let body = serde_json::to_vec(body).expect("json");
    let mut req = Signed::new(&config, &body, unix_now());
    req.headers.push(("X-GitHub-Event".into(), event.into()));
    let (status, answer) = app.post(&req.path, &req.headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().expect("an id").to_string()
}

#[actix_web::test]
async fn each_destination_gets_exactly_the_events_it_wants_and_the_rest_are_filtered() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let toml = format!(
        "[[sources]]\nname = \"gh\"\nkind = \"github\"\nsecrets = [\"s3cret\"]\n\
         [[sources.destinations]]\nname = \"all\"\nurl = \"{all}\"\n\
         [[sources.destinations]]\nname = \"pulls\"\nurl = \"{pulls}\"\nevent_types = [\"pull_*\"]\n\
         [[sources.destinations]]\nname = \"opened\"\nurl = \"{opened}\"\n\
         filter = {{ \"/action\" = [\"opened\", \"reopened\"], \"/repository/id\" = 3 }}\n",
        all = sink.url("/all"),
        pulls = sink.url("/pulls"),
        opened = sink.url("/opened"),
    );
    let mut settings = env.settings(&toml);
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN.to_string()));
    let app = spawn_app(settings).await;

    let n = uuid::Uuid::new_v4().simple().to_string();
    let body = |action: &str, repo: u64, i: u32| json!({"action": action, "repository": {"id": repo}, "n": format!("{n}-{i}")});
    let push = post_github(&app, "gh", "push", &body("opened", 3, 1)).await;
    let pr_opened = post_github(&app, "gh", "pull_request", &body("opened", 3, 2)).await;
    let pr_closed = post_github(&app, "gh", "pull_request", &body("closed", 3, 3)).await;
    let other = post_github(&app, "gh", "issues", &body("reopened", 4, 4)).await;
    let all = [&push, &pr_opened, &pr_closed, &other];

    eventually(Duration::from_secs(30), "every event at /all", || async {
        (sink.distinct("/all") == 4).then_some(())
    })
    .await;
    // Filtered events are settled at once, in reading order: by the time /all has them all
    // and the trail says every event is final, nothing more is coming anywhere.
    let ids = all
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    env.await_events(
        &format!("id IN ({ids}) AND status IN ('delivered', 'filtered')"),
        4,
        Duration::from_secs(30),
    )
    .await;
    let mut got_pulls: Vec<String> = sink.by_event("/pulls").into_keys().collect();
    got_pulls.sort();
    let mut want_pulls = vec![pr_opened.clone(), pr_closed.clone()];
    want_pulls.sort();
    assert_eq!(got_pulls, want_pulls, "event_types = [\"pull_*\"]");
    let mut got_opened: Vec<String> = sink.by_event("/opened").into_keys().collect();
    got_opened.sort();
    let mut want_opened = vec![push.clone(), pr_opened.clone()];
    want_opened.sort();
    assert_eq!(got_opened, want_opened, "the payload filter");

    // Each event's per-destination status says where it was filtered out, with no attempt.
    for (id, filtered_at) in [
        (&push, vec!["pulls"]),
        (&pr_opened, vec![]),
        (&pr_closed, vec!["opened"]),
        (&other, vec!["opened", "pulls"]),
    ] {
        let detail = eventually(
            Duration::from_secs(30),
            "the per-destination rows",
            || async {
                let (status, body) = app
                    .call("GET", &format!("/api/events/{id}"), Some(TOKEN))
                    .await;
                (status == 200 && body["deliveries"].as_array().is_some_and(|d| d.len() == 3))
                    .then_some(body)
            },
        )
        .await;
        let mut filtered: Vec<&str> = detail["deliveries"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|d| d["status"] == "filtered")
            .map(|d| d["destination"].as_str().expect("name"))
            .collect();
        filtered.sort();
        assert_eq!(filtered, filtered_at, "{id}: {detail}");
        assert_eq!(
            detail["status"], "delivered",
            "filtered counts as done: {detail}"
        );
        let attempts = detail["delivery_attempts"].as_array().expect("attempts");
        assert_eq!(
            attempts.len(),
            3 - filtered_at.len(),
            "no attempt where filtered: {detail}"
        );
    }

    // The stats and the metrics count them.
    let (status, stats) = app.call("GET", "/api/queue/stats", Some(TOKEN)).await;
    assert_eq!(status, 200, "{stats}");
    let dests = &stats["data"]["queues"]["gh"]["destinations"];
    assert_eq!(dests["pulls"]["filtered"], 2, "{stats}");
    assert_eq!(dests["opened"]["filtered"], 2, "{stats}");
    assert_eq!(dests["all"]["filtered"], 0, "{stats}");
    assert_eq!(dests["all"]["completed"], 4, "{stats}");
    assert_eq!(stats["data"]["summary"]["totalFiltered"], 4, "{stats}");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hookgate_deliveries_filtered_total{")
                && l.contains("destination=\"opened\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );
}
