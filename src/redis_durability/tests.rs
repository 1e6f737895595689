//! The findings, the report and the gauge label, without a Redis.

use super::assess::*;
use super::monitor::*;

fn facts(policy: &str, appendonly: &str, appendfsync: &str, save: &str) -> RedisFacts {
    RedisFacts {
        maxmemory_policy: Some(policy.into()),
        appendonly: Some(appendonly.into()),
        appendfsync: Some(appendfsync.into()),
        save: Some(save.into()),
        connected_replicas: Some(0),
        refused: None,
    }
}

fn reasons(findings: &[Finding]) -> Vec<(Severity, &'static str)> {
    findings.iter().map(|f| (f.severity, f.reason)).collect()
}

#[test]
fn noeviction_with_appendfsync_always_has_no_finding() {
    let f = facts("noeviction", "yes", "always", "");
    assert_eq!(assess(&f, 0), []);
    assert_eq!(
        durability(&f, 0),
        "appendfsync always — a 2xx survives a Redis crash or a power cut"
    );
    assert!(!Report::new(f, 0).data_loss_risk);
}

#[test]
fn eviction_and_no_persistence_are_errors() {
    let f = facts("allkeys-lru", "no", "everysec", "");
    let found = assess(&f, 0);
    assert_eq!(
        reasons(&found),
        [
            (Severity::Error, EVICTION),
            (Severity::Error, NO_PERSISTENCE)
        ]
    );
    assert!(found[0].message.contains("allkeys-lru"), "{found:?}");
    assert!(found[0].message.contains("an evicted stream is lost work"));
    assert!(found[1]
        .message
        .contains("a restart loses everything queued"));
    assert!(durability(&f, 0).starts_with("none"));
    let report = Report::new(f, 0);
    assert!(report.data_loss_risk);
    assert!(report.at_risk(EVICTION) && report.at_risk(NO_PERSISTENCE));
    assert!(!report.at_risk(TOO_FEW_REPLICAS));
    assert_eq!(report.appendonly, Some(false));
    // A volatile policy evicts too: the de-duplication keys, which have a TTL.
    let found = assess(&facts("volatile-lru", "yes", "always", ""), 0);
    assert_eq!(reasons(&found), [(Severity::Error, EVICTION)]);
    assert!(found[0].message.contains("queued again"), "{found:?}");
}

#[test]
fn a_lazy_fsync_is_a_warning_that_says_what_a_crash_loses() {
    let found = assess(&facts("noeviction", "yes", "everysec", ""), 0);
    assert_eq!(reasons(&found), [(Severity::Warning, APPENDFSYNC)]);
    assert!(found[0].message.contains("last second"), "{found:?}");
    assert!(found[0].message.contains("appendfsync always"));
    let found = assess(&facts("noeviction", "yes", "no", ""), 0);
    assert_eq!(reasons(&found), [(Severity::Warning, APPENDFSYNC)]);
    assert!(found[0].message.contains("the OS decides"), "{found:?}");
    assert!(!Report::new(facts("noeviction", "yes", "no", ""), 0).data_loss_risk);
}

#[test]
fn snapshots_alone_are_a_warning() {
    let f = facts("noeviction", "no", "everysec", "3600 1 300 100 60 10000");
    let found = assess(&f, 0);
    assert_eq!(reasons(&found), [(Severity::Warning, SNAPSHOTS_ONLY)]);
    assert!(found[0].message.contains("3600 1 300 100 60 10000"));
    assert!(durability(&f, 0).starts_with("snapshots only"));
}

#[test]
fn more_replicas_asked_than_connected_is_an_error() {
    let mut f = facts("noeviction", "yes", "always", "");
    f.connected_replicas = Some(1);
    assert_eq!(assess(&f, 1), []);
    let found = assess(&f, 2);
    assert_eq!(reasons(&found), [(Severity::Error, TOO_FEW_REPLICAS)]);
    assert!(
        found[0].message.contains("min_replicas_acked is 2"),
        "{found:?}"
    );
    assert!(durability(&f, 1).contains("survives a failover"));
    assert!(durability(&f, 2).ends_with("WAIT asks for 2 replica(s) but 1 are connected"));
    // Replicas are not checked when the gateway does not wait for them.
    f.connected_replicas = None;
    assert_eq!(assess(&f, 0), []);
}

#[test]
fn settings_redis_will_not_tell_are_unknown_not_fatal() {
    let f = RedisFacts {
        refused: Some("CONFIG GET maxmemory-policy: ERR unknown command 'CONFIG'".into()),
        connected_replicas: Some(0),
        ..RedisFacts::default()
    };
    let found = assess(&f, 0);
    assert_eq!(reasons(&found), [(Severity::Warning, UNKNOWN)]);
    assert!(
        found[0]
            .message
            .contains("cannot check maxmemory-policy, appendonly (CONFIG GET"),
        "{found:?}"
    );
    assert!(durability(&f, 0).starts_with("unknown"));
    let report = Report::new(f, 0);
    assert!(!report.data_loss_risk);
    assert_eq!(report.appendonly, None);
    // Partly readable: judged on what was read, the rest unknown.
    let mut f = facts("allkeys-lru", "yes", "always", "");
    f.appendfsync = None;
    f.connected_replicas = None;
    assert_eq!(
        reasons(&assess(&f, 1)),
        [(Severity::Error, EVICTION), (Severity::Warning, UNKNOWN)]
    );
    assert!(assess(&f, 1)[1]
        .message
        .contains("appendfsync, connected replicas"));
}

#[test]
fn replicas_are_read_from_info_replication() {
    let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.2\r\n";
    assert_eq!(connected_replicas(info), Some(2));
    assert_eq!(connected_replicas("# Replication\r\nrole:slave\r\n"), None);
}

#[test]
fn the_report_serializes_as_ready_shows_it() {
    let report = Report::new(facts("allkeys-lru", "no", "everysec", ""), 0);
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["maxmemory_policy"], "allkeys-lru");
    assert_eq!(json["appendonly"], false);
    assert_eq!(json["data_loss_risk"], true);
    assert_eq!(json["problems"][0]["severity"], "error");
    assert_eq!(json["problems"][0]["reason"], "eviction");
}
