//! What failed logins leave on the account's activity: each failure, and the start of a
//! slow-down or lock-out once, recorded by the attempt that reached it.

use std::time::Duration;

use gatehouse::config::LoginThrottle;
use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app_with};

both_backends!(
    failures_at_once_record_each_threshold_once,
    a_disabled_accounts_attempts_do_not_repeat_the_slow_down,
    a_failure_that_reaches_both_thresholds_records_the_lock_out,
);

const PASSWORD: &str = "correct horse battery";
const SLOWED: &str = "throttled: failed logins: slowed down";
const LOCKED: &str = "throttled: failed logins: locked until a password reset";

/// An app with alice signed up, under a login slow-down of a fixed `delay` after
/// `free_failures` that locks at `lock_after`.
pub async fn alice_under(
    backend: Backend,
    free_failures: u32,
    delay: Duration,
    lock_after: u32,
) -> TestApp {
    let app = spawn_app_with(backend, move |config| {
        config.abuse.login_throttle = LoginThrottle {
            free_failures,
            base_delay: delay,
            max_delay: delay,
            lock_after,
        };
    })
    .await;
    app.signup("alice", PASSWORD).await;
    app
}

/// How many of alice's events are of this `kind: detail`.
async fn alice_events(app: &TestApp, kind_and_detail: &'static str) -> String {
    app.fetch_text(
        "SELECT CAST(COUNT(*) AS TEXT) FROM events e JOIN users u ON u.id = e.user_id \
         WHERE u.username = 'alice' AND e.kind || ': ' || COALESCE(e.detail, '') = $1",
        kind_and_detail,
    )
    .await
    .unwrap()
}

/// Logs in as alice with a wrong password `times` times, one after the other.
async fn guess_wrong(app: &TestApp, times: usize) {
    for _ in 0..times {
        let wrong = app.login("alice", "wrong guess").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
}

async fn failures_at_once_record_each_threshold_once(backend: Backend) {
    let app = alice_under(backend, 3, Duration::from_secs(60), 6).await;
    let guesses: Vec<String> = (0..12).map(|n| format!("guess {n}")).collect();
    let answers =
        futures::future::join_all(guesses.iter().map(|guess| app.login("alice", guess))).await;
    let checked = answers
        .iter()
        .filter(|answer| answer.status() == StatusCode::UNAUTHORIZED)
        .count();
    // Attempts that arrived once the account was slowed down were refused unchecked (429).
    for answer in &answers {
        let status = answer.status();
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    let counted = app
        .fetch_text(
            "SELECT CAST(failures AS TEXT) FROM login_throttle WHERE name_hash = $1",
            &gatehouse::auth::throttle::name_hash("alice"),
        )
        .await;
    assert_eq!(
        counted,
        Some(checked.to_string()),
        "every checked attempt counts"
    );
    assert!(checked >= 3, "the free failures are always checked");

    // Each checked attempt is on alice's activity, and each threshold once, whichever of the
    // concurrent attempts reached it.
    let failures = alice_events(&app, "login_failure: api").await;
    assert_eq!(failures, checked.to_string());
    assert_eq!(alice_events(&app, SLOWED).await, "1");
    let reached = if checked >= 6 { "1" } else { "0" };
    assert_eq!(
        alice_events(&app, LOCKED).await,
        reached,
        "{checked} checked"
    );
}

async fn a_disabled_accounts_attempts_do_not_repeat_the_slow_down(backend: Backend) {
    let app = alice_under(backend, 3, Duration::from_secs(60), 6).await;
    guess_wrong(&app, 3).await;
    assert_eq!(alice_events(&app, SLOWED).await, "1");
    app.execute(
        "UPDATE users SET disabled = TRUE WHERE username = $1",
        "alice",
    )
    .await;
    app.clock.advance(chrono::Duration::seconds(61));
    // The right password on a disabled account: refused and recorded, but not a failure that
    // counts, so the slow-down it did not reach is not recorded again.
    let inactive = app.login("alice", PASSWORD).await;
    assert_eq!(inactive.status(), StatusCode::BAD_REQUEST);
    assert_eq!(alice_events(&app, "login_failure: api").await, "4");
    assert_eq!(alice_events(&app, SLOWED).await, "1");
}

async fn a_failure_that_reaches_both_thresholds_records_the_lock_out(backend: Backend) {
    let app = alice_under(backend, 3, Duration::from_secs(60), 3).await;
    guess_wrong(&app, 3).await;
    assert_eq!(alice_events(&app, LOCKED).await, "1");
    assert_eq!(alice_events(&app, SLOWED).await, "0");
}
