//! The circuit breaker's tests: its pure rules, and its scripts against the shared Redis.

use super::*;

#[test]
fn stored_states_read_as_the_scripts_treat_them() {
    assert_eq!(stored_status(None), CircuitStatus::Closed);
    assert_eq!(stored_status(Some("closed")), CircuitStatus::Closed);
    assert_eq!(stored_status(Some("open")), CircuitStatus::Open);
    assert_eq!(stored_status(Some("half_open")), CircuitStatus::HalfOpen);
    assert_eq!(stored_status(Some("bogus")), CircuitStatus::HalfOpen);
}

#[test]
fn only_a_success_begun_after_the_opening_is_late_news() {
    use CircuitStatus::*;
    assert_eq!(late_success(Open, 100, Some(150)), Some(150));
    assert_eq!(late_success(HalfOpen, 100, Some(100)), Some(100));
    assert_eq!(late_success(Open, 100, Some(99)), None, "a straggler");
    assert_eq!(
        late_success(Closed, 100, Some(150)),
        None,
        "nothing to close"
    );
    assert_eq!(late_success(Open, 100, None), None);
}

const THREE_THEN_OPEN: CircuitPolicy = CircuitPolicy {
    failure_threshold: 3,
    open_seconds: 60,
};

fn breaker(key: &str) -> Circuit {
    Circuit::new(key.into(), THREE_THEN_OPEN, Duration::from_secs(15))
}

struct Key(String);

impl Key {
    fn new() -> Self {
        Key(format!("hgtest-{}:circuit", uuid::Uuid::new_v4().simple()))
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ) {
            if let Ok(mut conn) = client.get_connection() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&self.0).query(&mut conn);
            }
        }
    }
}

/// Three failures of attempts begun at `at` open the circuit; when it opened (`changed_at`).
async fn open(c: &Circuit, conn: &mut redis::aio::MultiplexedConnection, at: u64) -> u64 {
    for _ in 0..3 {
        c.record(conn, false, at).await.expect("record");
    }
    let (state, changed_at) = read_with_change(conn, &c.key).await.expect("read");
    assert_eq!(state.state, CircuitStatus::Open);
    changed_at
}

/// A connection, and a circuit of its own opened at the returned time.
async fn opened() -> (redis::aio::MultiplexedConnection, Key, Circuit, u64) {
    let mut conn = crate::queue::test_connection().await;
    let key = Key::new();
    let c = breaker(&key.0);
    let opened_at = open(&c, &mut conn, now_ms()).await;
    (conn, key, c, opened_at)
}

async fn state(conn: &mut redis::aio::MultiplexedConnection, key: &Key) -> CircuitState {
    read(conn, &key.0).await.expect("read")
}

async fn changed_at(conn: &mut redis::aio::MultiplexedConnection, key: &Key) -> u64 {
    read_with_change(conn, &key.0).await.expect("read").1
}

#[actix_web::test]
async fn a_success_begun_after_the_opening_closes_it_and_a_straggler_does_not() {
    let (mut conn, key, c, t) = opened().await;
    let straggler = c.record(&mut conn, true, t - 1).await;
    assert_eq!(straggler.expect("record"), None);
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Open);
    let late = c.record(&mut conn, true, t).await.expect("record");
    assert_eq!(late, Some(Transition::Closed));
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Closed);
}

#[actix_web::test]
async fn outcomes_begun_before_the_last_change_change_nothing() {
    let (mut conn, key, c, t) = opened().await;
    // A failure begun before the opening (a slow timeout, recorded after it): nothing new.
    assert_eq!(
        c.record(&mut conn, false, t - 5).await.expect("record"),
        None
    );
    assert_eq!(changed_at(&mut conn, &key).await, t, "the opening stays");
    // One begun after it opens it again, from its start: a success begun before that
    // failure is older news than it.
    c.record(&mut conn, false, t + 5).await.expect("record");
    assert_eq!(changed_at(&mut conn, &key).await, t + 5);
    assert_eq!(
        c.record(&mut conn, true, t + 3).await.expect("record"),
        None
    );
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Open);
    let closed = c.record(&mut conn, true, t + 6).await.expect("record");
    assert_eq!(closed, Some(Transition::Closed));
    // Failures begun before that success do not count towards opening it again.
    for _ in 0..3 {
        c.record(&mut conn, false, t + 5).await.expect("record");
    }
    let now = state(&mut conn, &key).await;
    assert_eq!((now.state, now.failures), (CircuitStatus::Closed, 0));
    // Later ones do.
    open(&c, &mut conn, t + 7).await;
}

#[actix_web::test]
async fn a_success_unreported_on_a_stale_view_closes_it_at_the_next_refresh() {
    let mut conn = crate::queue::test_connection().await;
    let key = Key::new();
    let (one, two) = (breaker(&key.0), breaker(&key.0));
    two.refresh(&mut conn).await.expect("refresh");
    let t = open(&one, &mut conn, now_ms()).await;
    // Replica two still sees it closed: its success costs no call, and is kept.
    let started = t + 1;
    assert_eq!(
        two.record(&mut conn, true, started).await.expect("record"),
        None
    );
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Open);
    assert_eq!(two.late_success(), None, "its view is still closed");
    two.refresh(&mut conn).await.expect("refresh");
    assert_eq!(two.late_success(), Some(started));
    let told = two.record(&mut conn, true, started).await.expect("record");
    assert_eq!(told, Some(Transition::Closed));
    assert_eq!(two.late_success(), None, "reported once");
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Closed);
    // One of its own begun before the next opening is a straggler there.
    let reopened = open(&one, &mut conn, started + 1).await;
    two.record(&mut conn, true, reopened - 1)
        .await
        .expect("record");
    two.refresh(&mut conn).await.expect("refresh");
    assert_eq!(two.late_success(), None);
}

#[actix_web::test]
async fn a_success_that_ended_before_timeouts_opened_it_does_not_close_it() {
    let mut conn = crate::queue::test_connection().await;
    let key = Key::new();
    let c = breaker(&key.0);
    let t = now_ms();
    // Three requests begun 10 s ago time out now; a quick one begun 5 s ago had succeeded.
    let opened_at = open(&c, &mut conn, t - 10_000).await;
    assert!(opened_at >= t, "it opened when the timeouts were recorded");
    assert_eq!(
        c.record(&mut conn, true, t - 5_000).await.expect("record"),
        None
    );
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Open);
}

#[actix_web::test]
async fn a_probe_given_back_goes_to_the_next_delivery() {
    let (mut conn, key, c, _) = opened().await;
    // The opening is over: the first gate takes the probe, the next waits for it.
    let _: () = redis::cmd("HSET")
        .arg(&key.0)
        .arg("open_until")
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("HSET");
    assert_eq!(c.gate(&mut conn).await.expect("gate"), Gate::Probe);
    assert!(matches!(
        c.gate(&mut conn).await.expect("gate"),
        Gate::Wait(_)
    ));
    c.give_back_probe(&mut conn).await.expect("give back");
    assert_eq!(c.gate(&mut conn).await.expect("gate"), Gate::Probe);
}
