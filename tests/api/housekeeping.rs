//! Housekeeping: what has ended leaves the database, and nothing live goes with it.

use std::time::Duration;

use chrono::Duration as Span;
use gatehouse::auth::throttle::name_hash;
use gatehouse::housekeeping::{Policy, Swept, sweep_in_batches};
use gatehouse::store::NewEvent;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, TestDb, assert_detail, spawn_app, spawn_app_with, wait_for,
};
use crate::metrics::{sample, scrape};

both_backends!(
    ended_sessions_go_with_their_refresh_tokens_and_live_ones_stay,
    expired_links_and_events_past_retention_go,
    stale_failure_counts_go_but_a_lock_stays,
    an_event_stamped_in_the_future_does_not_hold_back_older_ones,
    the_service_sweeps_by_itself,
    a_sweep_stopped_part_way_counts_what_it_deleted,
    a_kind_that_fails_does_not_keep_the_others_from_being_swept,
    a_session_used_just_before_its_deadline_is_not_swept_under_the_request,
);

const PASSWORD: &str = "correct horse battery";

/// The service's own policy, a sweep in batches of two rows.
async fn sweep(app: &TestApp) -> Swept {
    sweep_with(app, Policy::of(&app.state.config)).await
}

async fn sweep_with(app: &TestApp, policy: Policy) -> Swept {
    let now = app.clock_now();
    sweep_in_batches(app.state.store.as_ref(), policy, now, 2)
        .await
        .unwrap()
}

/// A login's refresh token.
async fn refresh_token_of(app: &TestApp, username: &str) -> String {
    let response = app.login(username, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["refresh_token"].as_str().unwrap().to_string()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
}

async fn rows(app: &TestApp, sql: &'static str) -> i64 {
    app.count(sql, "").await
}

async fn ended_sessions_go_with_their_refresh_tokens_and_live_ones_stay(backend: Backend) {
    let app = spawn_app(backend).await;
    for name in ["alice", "bob"] {
        assert_eq!(app.signup(name, PASSWORD).await.status(), StatusCode::OK);
    }
    // Five API sessions of alice's and two of bob's: four batches of two to walk.
    let mut alices = Vec::new();
    for _ in 0..5 {
        alices.push(refresh_token_of(&app, "alice").await);
    }
    let bobs = [
        refresh_token_of(&app, "bob").await,
        refresh_token_of(&app, "bob").await,
    ];
    // A family with more used tokens than a batch holds: they go a batch at a time.
    let mut last_of_family = alices[4].clone();
    for _ in 0..4 {
        let response = refresh(&app, &last_of_family).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        last_of_family = body["refresh_token"].as_str().unwrap().to_string();
    }
    assert_eq!(sweep(&app).await, Swept::default(), "nothing has ended yet");
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM refresh_tokens WHERE $1 = $1").await,
        11
    );

    // Thirteen days on, one session of each is used; the others then pass the 14 idle days.
    app.clock.advance(Span::days(13));
    let kept = [&alices[2], &bobs[1]];
    let mut renewed = Vec::new();
    for token in kept {
        let response = refresh(&app, token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        renewed.push(body["refresh_token"].as_str().unwrap().to_string());
    }
    app.clock.advance(Span::days(2));
    let refused_before = refresh(&app, &alices[1]).await.status();
    assert_eq!(refused_before, StatusCode::BAD_REQUEST);

    let swept = sweep(&app).await;
    assert_eq!(swept.sessions, 5);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM sessions WHERE $1 = $1").await,
        2
    );
    // The used token of each live family stays, so that its reuse is still recognised.
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM refresh_tokens WHERE $1 = $1").await,
        4
    );
    assert_eq!(
        rows(
            &app,
            "SELECT COUNT(*) FROM refresh_tokens r LEFT JOIN sessions s ON s.id = r.session_id \
             WHERE s.id IS NULL AND $1 = $1"
        )
        .await,
        0,
        "no refresh token outlives its session"
    );
    for token in &renewed {
        let response = refresh(&app, token).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "a live session still works"
        );
        let body: Value = response.json().await.unwrap();
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(app.get_me(access).await.status(), StatusCode::OK);
    }
    // An ended session's refresh token is refused as before the sweep.
    assert_eq!(refresh(&app, &alices[0]).await.status(), refused_before);
    assert_eq!(sweep(&app).await, Swept::default());
}

/// Signs alice up with an address, which sends her a verification link.
async fn sign_up_alice_with_an_address(app: &TestApp) {
    let signup = app
        .post_json(
            "/users/",
            &json!({"username": "alice", "password": PASSWORD, "email": "alice@example.com"}),
        )
        .await;
    assert_eq!(signup.status(), StatusCode::OK);
}

async fn expired_links_and_events_past_retention_go(backend: Backend) {
    let app = spawn_app(backend).await;
    sign_up_alice_with_an_address(&app).await;
    let reset = app
        .post_json("/password-reset", &json!({"email": "alice@example.com"}))
        .await;
    assert_eq!(reset.status(), StatusCode::ACCEPTED);
    // The sign-up's verification link lives a day; the reset link, made after the answer,
    // 30 minutes.
    let made = async || rows(&app, "SELECT COUNT(*) FROM email_tokens WHERE $1 = $1").await == 2;
    wait_for("the reset link is made", Duration::from_secs(5), made).await;
    let events = rows(&app, "SELECT COUNT(*) FROM events WHERE $1 = $1").await;
    assert!(events >= 1, "the sign-up is on record");

    app.clock.advance(Span::minutes(29));
    assert_eq!(sweep(&app).await.email_tokens, 0);
    app.clock.advance(Span::minutes(2));
    assert_eq!(sweep(&app).await.email_tokens, 1);
    assert_eq!(
        app.fetch_text("SELECT purpose FROM email_tokens WHERE $1 = $1", "")
            .await
            .as_deref(),
        Some("verify_email"),
        "the link that has not expired stays"
    );

    // A year and a day later, a login is recorded beside the old events.
    app.clock.advance(Span::days(366));
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
    let keep_all = Policy {
        audit_retention: None,
        ..Policy::of(&app.state.config)
    };
    assert_eq!(sweep_with(&app, keep_all).await.events, 0);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM events WHERE $1 = $1").await,
        events + 1
    );
    assert_eq!(sweep(&app).await.events, u64::try_from(events).unwrap());
    assert_eq!(
        app.fetch_text("SELECT kind FROM events WHERE $1 = $1", "")
            .await
            .as_deref(),
        Some("login_success"),
        "only the new login is left"
    );
}

async fn stale_failure_counts_go_but_a_lock_stays(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.signup("carol", PASSWORD).await.status(), StatusCode::OK);
    let store = app.state.store.as_ref();
    let now = app.clock_now();
    for _ in 0..3 {
        store
            .add_login_failure(&name_hash("nobody"), now)
            .await
            .unwrap();
    }
    // Enough to lock carol's account (100 by default).
    for _ in 0..100 {
        store
            .add_login_failure(&name_hash("carol"), now)
            .await
            .unwrap();
    }
    app.clock.advance(Span::days(31));
    store
        .add_login_failure(&name_hash("recent"), app.clock_now())
        .await
        .unwrap();

    assert_eq!(sweep(&app).await.login_failures, 1);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM login_throttle WHERE $1 = $1").await,
        2
    );
    // The lock still holds: only a password reset opens the account.
    assert_detail(
        app.login("carol", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many failed login attempts for this account; reset the password to sign in",
    )
    .await;
}

async fn an_event_stamped_in_the_future_does_not_hold_back_older_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let store = app.state.store.as_ref();
    let now = app.clock_now();
    let at = |created_at, detail: &str| NewEvent {
        kind: "login_failure",
        user_id: None,
        actor_id: None,
        ip: None,
        user_agent: None,
        detail: Some(detail.to_string()),
        created_at,
    };
    // An instance whose clock ran far ahead recorded the second event; four more, recorded
    // right, follow it. Two years on, all but it are past the retention.
    store.record_event(at(now, "first")).await.unwrap();
    let ahead = now + Span::days(800);
    store.record_event(at(ahead, "ahead")).await.unwrap();
    for n in 0..4 {
        let after = now + Span::seconds(n);
        store.record_event(at(after, "after")).await.unwrap();
    }
    app.clock.advance(Span::days(730));

    // Batches of two: the first holds the early event and the one ahead; the walk goes on.
    assert_eq!(sweep(&app).await.events, 5);
    assert_eq!(
        app.fetch_text("SELECT detail FROM events WHERE $1 = $1", "")
            .await
            .as_deref(),
        Some("ahead"),
        "only the event not yet past the retention is left"
    );

    // The walk ends at the first batch with nothing past the retention; it does not read the
    // table to its end (an event stamped by a clock far behind, after two new ones, waits).
    let today = app.clock_now();
    store.record_event(at(today, "new")).await.unwrap();
    let behind = today - Span::days(800);
    store.record_event(at(behind, "behind")).await.unwrap();
    assert_eq!(sweep(&app).await, Swept::default());
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM events WHERE $1 = $1").await,
        3
    );
}

async fn the_service_sweeps_by_itself(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.housekeeping.interval = Some(Duration::from_millis(200));
    })
    .await;
    let token = app.signup_and_login("alice").await;
    assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM sessions WHERE $1 = $1").await,
        1
    );
    app.clock.advance(Span::days(31));
    let gone = async || rows(&app, "SELECT COUNT(*) FROM sessions WHERE $1 = $1").await == 0;
    wait_for("the ended session goes", Duration::from_secs(10), gone).await;
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM refresh_tokens WHERE $1 = $1").await,
        0
    );
    // A sweep is counted once all of it is done, a moment after the session went.
    let deleted = |metrics: &str, kind: &str| {
        let series = format!(r#"gatehouse_housekeeping_deleted_total{{kind="{kind}"}}"#);
        sample(metrics, &series)
    };
    let counted = async || deleted(&scrape(&app).await, "sessions") == Some(1.0);
    wait_for("the sweep is counted", Duration::from_secs(10), counted).await;
    let metrics = scrape(&app).await;
    assert_eq!(deleted(&metrics, "events"), Some(0.0));
    assert_eq!(
        sample(&metrics, "gatehouse_housekeeping_failures_total"),
        Some(0.0)
    );
}

async fn a_sweep_stopped_part_way_counts_what_it_deleted(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.housekeeping.interval = Some(Duration::from_millis(200));
    })
    .await;
    let token = app.signup_and_login("alice").await;
    assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);
    // The last table a sweep visits is gone: every sweep fails there, after the sessions.
    app.execute_sql("DROP TABLE login_throttle").await;
    app.clock.advance(Span::days(31));
    let counted = async || {
        let metrics = scrape(&app).await;
        let sessions = r#"gatehouse_housekeeping_deleted_total{kind="sessions"}"#;
        let failures = "gatehouse_housekeeping_failures_total";
        sample(&metrics, sessions) == Some(1.0) && sample(&metrics, failures) >= Some(1.0)
    };
    wait_for(
        "the stopped sweep is counted",
        Duration::from_secs(10),
        counted,
    )
    .await;
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM sessions WHERE $1 = $1").await,
        0
    );

    // What the command line and the log say of such a sweep.
    let policy = Policy::of(&app.state.config);
    let store = app.state.store.as_ref();
    let stopped = sweep_in_batches(store, policy, app.clock_now(), 2)
        .await
        .expect_err("the failure counts cannot be read");
    let said = stopped.to_string();
    let expected = "housekeeping deleted 0 ended sessions, 0 expired link tokens, 0 audit \
                    events and 0 stale login-failure counts but could not finish: ";
    assert!(said.starts_with(expected), "{said}");
}

/// On SQLite every write waits for the one writer (logins too), and even a delete that finds
/// nothing takes the write lock: a sweep with nothing to delete only reads, so it finishes
/// while another connection holds that lock.
#[tokio::test]
async fn on_sqlite_a_sweep_with_nothing_to_delete_takes_no_write_lock() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.signup_and_login("alice").await;
    assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);
    let TestDb::Sqlite(pool) = &app.db else {
        unreachable!("a SQLite app")
    };
    let mut writer = pool.acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *writer)
        .await
        .unwrap();
    // Without the lock, a sweep would wait for the busy timeout (5 s), then fail.
    let swept = sweep_in_batches(
        app.state.store.as_ref(),
        Policy::of(&app.state.config),
        app.clock_now(),
        2,
    )
    .await;
    sqlx::query("ROLLBACK").execute(&mut *writer).await.unwrap();
    assert_eq!(swept.unwrap(), Swept::default());
}

/// One row of each kind a sweep deletes, all of them past their time: alice's session (the
/// first kind walked), her sign-up's verification link, the sign-up and login events, and a
/// failure count. Returns how many events there are.
async fn one_of_each_kind_ended(app: &TestApp) -> u64 {
    sign_up_alice_with_an_address(app).await;
    refresh_token_of(app, "alice").await;
    let store = app.state.store.as_ref();
    let nobody = name_hash("nobody");
    store
        .add_login_failure(&nobody, app.clock_now())
        .await
        .unwrap();
    let made = async || rows(app, "SELECT COUNT(*) FROM email_tokens WHERE $1 = $1").await == 1;
    wait_for(
        "the verification link is made",
        Duration::from_secs(5),
        made,
    )
    .await;
    app.clock.advance(Span::days(366));
    let events = rows(app, "SELECT COUNT(*) FROM events WHERE $1 = $1").await;
    u64::try_from(events).unwrap()
}

/// Sweeps in batches of two, expecting it to fail.
async fn failed_sweep(app: &TestApp) -> gatehouse::housekeeping::Interrupted {
    let policy = Policy::of(&app.state.config);
    sweep_in_batches(app.state.store.as_ref(), policy, app.clock_now(), 2)
        .await
        .expect_err("the sweep fails")
}

async fn a_kind_that_fails_does_not_keep_the_others_from_being_swept(backend: Backend) {
    let app = spawn_app(backend).await;
    let events = one_of_each_kind_ended(&app).await;
    assert!(events >= 2, "the sign-up and the login are on record");
    // The ended session's refresh tokens cannot be deleted, so neither can the session.
    app.execute_sql("DROP TABLE refresh_tokens").await;

    let failed = failed_sweep(&app).await;
    assert_eq!(
        failed.swept,
        Swept {
            sessions: 0,
            email_tokens: 1,
            events,
            login_failures: 1,
        }
    );
    let said = failed.to_string();
    assert!(said.contains("refresh_tokens"), "{said}");
    for (table, left) in [
        ("SELECT COUNT(*) FROM sessions WHERE $1 = $1", 1),
        ("SELECT COUNT(*) FROM email_tokens WHERE $1 = $1", 0),
        ("SELECT COUNT(*) FROM events WHERE $1 = $1", 0),
        ("SELECT COUNT(*) FROM login_throttle WHERE $1 = $1", 0),
    ] {
        assert_eq!(rows(&app, table).await, left, "{table}");
    }
}

/// A database that says it is away (here PostgreSQL's "cannot connect now", raised by a
/// trigger when the first kind deletes) stops the sweep: the other kinds are left for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_away_stops_the_sweep() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    one_of_each_kind_ended(&app).await;
    app.postgres_away_on("DELETE", "refresh_tokens").await;

    let failed = failed_sweep(&app).await;
    assert_eq!(failed.swept, Swept::default());
    let said = failed.to_string();
    assert!(said.contains("refused with 57P03"), "{said}");
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM email_tokens WHERE $1 = $1").await,
        1
    );
}

/// A kind the database gives up for contention (here a deadlock, raised by a trigger when
/// refresh tokens are deleted) is one failed kind: a 503 to a request, but the database
/// answers, so the sweep goes on to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_on_one_kind_does_not_stop_the_sweep() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    one_of_each_kind_ended(&app).await;
    app.postgres_raises_on("40P01", "DELETE", "refresh_tokens")
        .await;

    let failed = failed_sweep(&app).await;
    let said = failed.to_string();
    assert!(said.contains("refused with 40P01"), "{said}");
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM email_tokens WHERE $1 = $1").await,
        0,
        "the links were swept after the failed kind"
    );
}

/// A request that found its session live just before the idle deadline may record the use
/// just after it. A sweep in between leaves the session to that request (it is swept a few
/// minutes after its end), so the session it kept alive keeps its refresh tokens; swept at
/// once, it could have been left without them, or gone under a request that used it in time.
async fn a_session_used_just_before_its_deadline_is_not_swept_under_the_request(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.signup("alice", PASSWORD).await.status(), StatusCode::OK);
    let token = refresh_token_of(&app, "alice").await;
    let id = rows(&app, "SELECT MAX(id) FROM sessions WHERE $1 = $1").await;
    app.clock.advance(Span::days(14) - Span::seconds(1));
    let read_at = app.clock_now();
    app.clock.advance(Span::seconds(2));
    assert_eq!(sweep(&app).await.sessions, 0, "ended a second ago");
    let store = app.state.store.as_ref();
    store
        .touch_session(id, read_at, read_at + Span::days(14))
        .await
        .unwrap();
    assert_eq!(refresh(&app, &token).await.status(), StatusCode::OK);

    // Unused for the 14 idle days and five minutes more, it goes.
    app.clock.advance(Span::days(14) + Span::minutes(5));
    assert_eq!(sweep(&app).await.sessions, 1);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM sessions WHERE $1 = $1").await,
        0
    );
}
