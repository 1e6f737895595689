//! Routing: destinations that want only some events (`event_types`, `filter`) and ordered
//! delivery per key (`ordering_key`), against real Redis, PostgreSQL and HTTP sinks.

use std::time::Duration;

use hookgate::send::unix_now;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, Signed, TestApp, TestEnv};
use crate::sink::{Behaviour, Sink};

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

/// Posts `{"lead": lead, "seq": seq, "poison": poison}` to source `gh`; returns its id.
async fn post_lead(app: &TestApp, run: &str, lead: &str, seq: u32, poison: bool) -> String {
    let body = json!({"lead": lead, "seq": seq, "poison": poison, "run": run});
    post_github(app, "gh", "lead", &body).await
}

/// The ids answered 2xx on `path`, in the order answered.
fn delivered_in_order(sink: &Sink, path: &str) -> Vec<String> {
    sink.outcomes()
        .into_iter()
        .filter(|o| o.path == path && (200..300).contains(&o.status))
        .map(|o| o.webhook_id)
        .collect()
}

#[actix_web::test]
async fn a_dead_event_blocks_its_key_until_replayed_or_discarded_or_is_skipped() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let refuse = Behaviour::RefuseBodies {
        needle: "\"poison\":true".into(),
        status: 410,
    };
    sink.set("/block", refuse.clone());
    sink.set("/skip", refuse);
    let toml = format!(
        "[[sources]]\nname = \"gh\"\nkind = \"github\"\nsecrets = [\"s3cret\"]\n\
         [[sources.destinations]]\nname = \"block\"\nurl = \"{block}\"\n\
         ordering_key = \"/lead\"\non_dead = \"block\"\n\
         [[sources.destinations]]\nname = \"skip\"\nurl = \"{skip}\"\n\
         ordering_key = \"/lead\"\non_dead = \"skip\"\n",
        block = sink.url("/block"),
        skip = sink.url("/skip"),
    );
    let mut settings = env.settings(&toml);
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN.to_string()));
    let app = spawn_app(settings).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut a = Vec::new();
    for (seq, poison) in [(0, false), (1, true), (2, false), (3, false)] {
        a.push(post_lead(&app, &run, "A", seq, poison).await);
    }
    let c0 = post_lead(&app, &run, "C", 0, true).await;
    let c1 = post_lead(&app, &run, "C", 1, false).await;
    let d0 = post_lead(&app, &run, "D", 0, true).await;
    let d1 = post_lead(&app, &run, "D", 1, false).await;
    let mut b = Vec::new();
    for seq in 0..3 {
        b.push(post_lead(&app, &run, "B", seq, false).await);
    }

    // With `skip`, the key moves on past its dead event.
    eventually(
        Duration::from_secs(30),
        "every live event at /skip",
        || async { (delivered_in_order(&sink, "/skip").len() == 8).then_some(()) },
    )
    .await;
    let at_skip = delivered_in_order(&sink, "/skip");
    let order_of = |ids: &[String], want: &[&String]| {
        let got: Vec<&String> = ids.iter().filter(|i| want.contains(i)).collect();
        assert_eq!(got, want, "in acceptance order");
    };
    order_of(&at_skip, &[&a[0], &a[2], &a[3]]);
    order_of(&at_skip, &[&c1]);
    order_of(&at_skip, &[&d1]);
    order_of(&at_skip, &[&b[0], &b[1], &b[2]]);

    // With `block`, keys A, C and D wait behind their dead events; B flows.
    let blocked = eventually(
        Duration::from_secs(30),
        "three blocked keys, the free one delivered",
        || async {
            let (status, body) = app.call("GET", "/api/blocked", Some(TOKEN)).await;
            assert_eq!(status, 200, "{body}");
            let list = body["blocked"].as_array().cloned().unwrap_or_default();
            let free_keys_done = delivered_in_order(&sink, "/block").len() == 4;
            (list.len() == 3 && free_keys_done).then_some(list)
        },
    )
    .await;
    let waiting: Vec<(String, String, u64)> = blocked
        .iter()
        .map(|e| {
            assert_eq!(
                (e["source"].as_str(), e["destination"].as_str()),
                (Some("gh"), Some("block"))
            );
            (
                e["key"].as_str().expect("key").to_string(),
                e["event_id"].as_str().expect("id").to_string(),
                e["waiting"].as_u64().expect("waiting"),
            )
        })
        .collect();
    assert_eq!(
        waiting,
        vec![
            ("A".to_string(), a[1].clone(), 2),
            ("C".to_string(), c0.clone(), 1),
            ("D".to_string(), d0.clone(), 1)
        ]
    );
    let at_block = delivered_in_order(&sink, "/block");
    assert_eq!(at_block.len(), 4, "a0 and B's three: {at_block:?}");
    let (_, stats) = app.call("GET", "/api/queue/stats", Some(TOKEN)).await;
    let figures = &stats["data"]["queues"]["gh"]["destinations"]["block"];
    assert_eq!(figures["held"], 4, "{stats}");
    assert_eq!(figures["blocked_keys"], 3, "{stats}");

    // The dead events are accepted now: replaying A's delivers it, then the rest of A. A
    // replay reads the event from the audit trail, which has it shortly after acceptance.
    env.await_events("source = 'gh'", 11, Duration::from_secs(30))
        .await;
    sink.set("/block", Behaviour::Ok);
    let (status, body) = app
        .call("POST", &format!("/api/events/{}/replay", a[1]), Some(TOKEN))
        .await;
    assert_eq!(status, 202, "{body}");
    // Discarding C's lets C's next event go without it.
    let key_c = json!({"key": "C"});
    let discard_c = || app.call_json("POST", "/api/blocked/gh/block/discard", TOKEN, &key_c);
    let (status, body) = discard_c().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event_id"], c0.as_str(), "{body}");
    let (status, body) = discard_c().await;
    assert_eq!(status, 404, "not blocked any more: {body}");
    // Replaying D's under a new id (to this destination only) takes over its hold.
    let (status, body) = app
        .call(
            "POST",
            &format!("/api/events/{d0}/replay?new_id=true&destination=block"),
            Some(TOKEN),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let d0_again = body["id"].as_str().expect("the new id").to_string();

    eventually(
        Duration::from_secs(30),
        "keys A, C and D delivered",
        || async { (delivered_in_order(&sink, "/block").len() == 10).then_some(()) },
    )
    .await;
    let at_block = delivered_in_order(&sink, "/block");
    order_of(&at_block, &[&a[0], &a[1], &a[2], &a[3]]);
    order_of(&at_block, &[&c1]);
    order_of(&at_block, &[&d0_again, &d1]);
    assert!(
        !at_block.contains(&c0),
        "the discarded event is not delivered"
    );
    let (_, body) = app.call("GET", "/api/blocked", Some(TOKEN)).await;
    assert_eq!(body["blocked"], json!([]), "{body}");
}

#[actix_web::test]
async fn events_waiting_behind_a_key_go_when_the_destination_stops_being_ordered() {
    let env = TestEnv::new();
    let sink = Sink::start();
    sink.set(
        "/crm",
        Behaviour::RefuseBodies {
            needle: "\"poison\":true".into(),
            status: 410,
        },
    );
    let config = |ordering: &str| {
        format!(
            "[[sources]]\nname = \"gh\"\nkind = \"github\"\nsecrets = [\"s3cret\"]\n\
             [[sources.destinations]]\nname = \"crm\"\nurl = \"{}\"\n{ordering}\n",
            sink.url("/crm")
        )
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = env.settings(&config("ordering_key = \"/lead\"\non_dead = \"block\""));
    settings.admin_token = Some(hookgate::config::Secret::new(TOKEN.to_string()));
    let app = spawn_app(settings).await;
    post_lead(&app, &run, "A", 0, true).await;
    let waiting = [
        post_lead(&app, &run, "A", 1, false).await,
        post_lead(&app, &run, "A", 2, false).await,
    ];
    eventually(Duration::from_secs(30), "key A blocked", || async {
        let (_, body) = app.call("GET", "/api/blocked", Some(TOKEN)).await;
        (body["blocked"][0]["waiting"] == 2).then_some(())
    })
    .await;
    drop(app);

    // The same destination without ordering_key: what waited is delivered (unordered now,
    // so in any order).
    let app = spawn_app(env.settings(&config(""))).await;
    let mut expected = waiting.to_vec();
    expected.sort();
    eventually(
        Duration::from_secs(30),
        "the waiting events delivered",
        || async {
            let mut got = delivered_in_order(&sink, "/crm");
            got.sort();
            (got == expected).then_some(())
        },
    )
    .await;
    let mut redis = env.redis().await;
    let holds: usize = redis::cmd("HLEN")
        .arg(format!("{}:{{gh}}:dest:crm:order:holds", env.prefix))
        .query_async(&mut redis)
        .await
        .expect("HLEN");
    assert_eq!(holds, 0, "no key is held any more");
    drop(app);
}
