//! The sender's headers that reach destinations (`forward_headers`): a default per kind, any
//! the destination names, and never the secrets, the signatures or hookgate's own.

use std::time::Duration;

use hookgate::send::{sample_body, unix_now};

use crate::helpers::{spawn_app, Signed, TestApp, TestEnv};
use crate::sink::{Received, Sink};

const DEADLINE: Duration = Duration::from_secs(30);

/// A source of `kind` delivering to one destination at `url`, with `extra` destination keys.
fn source(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\nkind = \"{kind}\"\nsecrets = [\"{name}-secret\"]\n\
         [[sources.destinations]]\nname = \"dest\"\nurl = \"{url}\"\n{extra}\n"
    )
}

/// Posts a body signed for `source`, with these headers on top of the signature; returns the
/// event id, the headers sent and the single request the sink received on `path`.
async fn post_and_receive(
    app: &TestApp,
    sink: &Sink,
    source: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (String, Vec<(String, String)>, Received) {
    let body = sample_body(uuid::Uuid::new_v4().as_u64_pair().0 >> 16);
    let signed = Signed::new(&app.source(source), &body, unix_now());
    let mut headers = signed.headers;
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (status, answer) = app.post(&signed.path, &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().expect("event id").to_string();
    sink.await_events(path, std::slice::from_ref(&id), DEADLINE, path)
        .await;
    let mut got = sink.by_event(path).remove(&id).expect("delivered");
    assert_eq!(got.len(), 1, "{path}: one delivery");
    (id, headers, got.remove(0))
}

/// The value sent for a header (names compared case-insensitively).
fn sent<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} was sent"))
}

/// Asserts that none of these headers reached the destination.
fn absent(r: &Received, names: &[&str], what: &str) {
    for name in names {
        assert!(
            !r.headers.contains_key(&name.to_ascii_lowercase()),
            "{what}: {name} was forwarded: {:?}",
            r.headers
        );
    }
}

#[actix_web::test]
async fn github_default_forwards_event_and_delivery_but_not_the_signature() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let app = spawn_app(env.settings(&source("gh", "github", &sink.url("/gh"), ""))).await;

    let extra = [
        ("X-GitHub-Event", "pull_request"),
        ("X-Custom", "not by default"),
    ];
    let (id, headers, r) = post_and_receive(&app, &sink, "gh", "/gh", &extra).await;

    assert_eq!(r.header("x-github-event"), "pull_request");
    assert_eq!(
        r.header("x-github-delivery"),
        sent(&headers, "x-github-delivery")
    );
    assert!(!r.header("x-github-delivery").is_empty());
    absent(&r, &["X-Hub-Signature-256", "X-Custom"], "github default");
    assert_eq!(r.header("webhook-id"), id);
    assert_eq!(r.header("hookgate-source"), "gh");
}

#[actix_web::test]
async fn star_forwards_custom_headers_but_never_secrets_signatures_or_ours() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let star = "forward_headers = [\"*\"]";
    let config = format!(
        "{}{}",
        source("gh", "github", &sink.url("/gh"), star),
        source("pl", "pluggy", &sink.url("/pl"), star),
    );
    let app = spawn_app(env.settings(&config)).await;
    let extra = [
        ("Authorization", "Bearer sender-token"),
        ("Cookie", "session=sender"),
        ("Proxy-Authorization", "Basic c2VuZGVy"),
        ("X-Custom", "kept"),
        ("webhook-id", "forged-by-sender"),
        ("Hookgate-Attempt", "99"),
        ("User-Agent", "Sender/1.0"),
    ];
    let never = ["Authorization", "Cookie", "Proxy-Authorization"];

    let (gh_id, gh_sent, gh) = post_and_receive(&app, &sink, "gh", "/gh", &extra).await;
    assert_eq!(gh.header("x-custom"), "kept");
    assert_eq!(
        gh.header("x-github-delivery"),
        sent(&gh_sent, "x-github-delivery")
    );
    absent(&gh, &never, "github *");
    absent(&gh, &["X-Hub-Signature-256"], "github *");

    let (pl_id, pl_sent, pl) = post_and_receive(&app, &sink, "pl", "/pl", &extra).await;
    assert!(!sent(&pl_sent, "x-webhook-secret").is_empty());
    assert_eq!(pl.header("x-custom"), "kept");
    absent(&pl, &never, "pluggy *");
    absent(&pl, &["X-Webhook-Secret"], "pluggy *");

    // hookgate's own headers are its own, whatever the sender put in headers of that name.
    for (id, r, name) in [(gh_id, gh, "gh"), (pl_id, pl, "pl")] {
        assert_eq!(r.header("webhook-id"), id, "{name}");
        assert_eq!(r.header("hookgate-attempt"), "1", "{name}");
        assert_eq!(r.header("hookgate-source"), name);
        assert!(
            r.header("user-agent").starts_with("hookgate/"),
            "{name}: {}",
            r.header("user-agent")
        );
        assert_eq!(r.header("content-type"), "application/json", "{name}");
    }
}

#[actix_web::test]
async fn an_empty_list_and_the_stripe_default_forward_nothing_of_the_senders() {
    let env = TestEnv::new();
    let sink = Sink::start();
    let config = format!(
        "{}{}",
        source("gh", "github", &sink.url("/gh"), "forward_headers = []"),
        source("st", "stripe", &sink.url("/st"), ""),
    );
    let app = spawn_app(env.settings(&config)).await;
    let extra = [
        ("X-GitHub-Event", "push"),
        ("X-Custom", "dropped"),
        ("webhook-id", "forged-by-sender"),
    ];

    for (name, path) in [("gh", "/gh"), ("st", "/st")] {
        let (id, headers, r) = post_and_receive(&app, &sink, name, path, &extra).await;
        let senders: Vec<&str> = headers
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !k.eq_ignore_ascii_case("webhook-id"))
            .collect();
        absent(&r, &senders, name);
        assert_eq!(r.header("webhook-id"), id, "{name}");
        assert_eq!(r.header("hookgate-source"), name);
    }
}
