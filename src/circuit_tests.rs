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

/// Three failures of attempts begun at `at` open the circuit.
async fn open(c: &Circuit, conn: &mut redis::aio::MultiplexedConnection, at: u64) {
    for _ in 0..3 {
        c.record(conn, false, at).await.expect("record");
    }
    let (state, changed_at) = read_with_change(conn, &c.key).await.expect("read");
    assert_eq!((state.state, changed_at), (CircuitStatus::Open, at));
}

/// A connection, and a circuit of its own opened by failures begun at the returned time.
async fn opened() -> (redis::aio::MultiplexedConnection, Key, Circuit, u64) {
    let mut conn = crate::queue::test_connection().await;
    let key = Key::new();
    let c = breaker(&key.0);
    let t = now_ms();
    open(&c, &mut conn, t).await;
    (conn, key, c, t)
}

async fn state(conn: &mut redis::aio::MultiplexedConnection, key: &Key) -> CircuitState {
    read(conn, &key.0).await.expect("read")
}

#[actix_web::test]
async fn a_success_begun_after_the_opening_closes_it_and_a_straggler_does_not() {
    let (mut conn, key, c, t) = opened().await;
    let straggler = c.record(&mut conn, true, t - 1).await;
    assert_eq!(straggler.expect("record"), None);
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Open);
    let late = c.record(&mut conn, true, t).await.expect("record");
    assert!(matches!(late, Some(Transition::Closed { was_open_until }) if was_open_until > t));
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Closed);
}

#[actix_web::test]
async fn outcomes_begun_before_the_last_change_change_nothing() {
    let (mut conn, key, c, t) = opened().await;
    // A failure begun before the opening, recorded after it: no new opening.
    assert_eq!(
        c.record(&mut conn, false, t - 5).await.expect("record"),
        None
    );
    let (_, changed_at) = read_with_change(&mut conn, &key.0).await.expect("read");
    assert_eq!(changed_at, t, "a straggler does not move the opening");
    // So a success begun between the two still closes it.
    let closed = c.record(&mut conn, true, t + 1).await.expect("record");
    assert!(matches!(closed, Some(Transition::Closed { .. })));
    // Failures begun before that success do not count towards opening it again.
    for _ in 0..3 {
        c.record(&mut conn, false, t).await.expect("record");
    }
    let now = state(&mut conn, &key).await;
    assert_eq!((now.state, now.failures), (CircuitStatus::Closed, 0));
    // Later ones do.
    open(&c, &mut conn, t + 2).await;
}

#[actix_web::test]
async fn a_success_unreported_on_a_stale_view_closes_it_at_the_next_refresh() {
    let mut conn = crate::queue::test_connection().await;
    let key = Key::new();
    let (one, two) = (breaker(&key.0), breaker(&key.0));
    two.refresh(&mut conn).await.expect("refresh");
    let t = now_ms();
    open(&one, &mut conn, t).await;
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
    assert!(matches!(told, Some(Transition::Closed { .. })));
    assert_eq!(two.late_success(), None, "reported once");
    assert_eq!(state(&mut conn, &key).await.state, CircuitStatus::Closed);
    // One of its own begun before the next opening is a straggler there.
    open(&one, &mut conn, t + 3).await;
    two.record(&mut conn, true, t + 2).await.expect("record");
    two.refresh(&mut conn).await.expect("refresh");
    assert_eq!(two.late_success(), None);
}

#[actix_web::test]
async fn a_close_makes_due_what_was_parked_until_the_opening_ended() {
    let mut conn = crate::queue::test_connection().await;
    let schedule = Key::new();
    let now = now_ms();
    let _: () = redis::cmd("ZADD")
        .arg(&schedule.0)
        .arg(now + 1_000)
        .arg("parked")
        .arg(now + 60_000)
        .arg("later")
        .arg(now - 10)
        .arg("due")
        .query_async(&mut conn)
        .await
        .expect("ZADD");
    let released = release_parked(&mut conn, std::slice::from_ref(&schedule.0), now + 1_000)
        .await
        .expect("release");
    assert_eq!(released, 1);
    let scores: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(&schedule.0)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    assert_eq!(
        scores,
        vec![
            ("parked".to_string(), 0),
            ("due".to_string(), now - 10),
            ("later".to_string(), now + 60_000)
        ]
    );
}
