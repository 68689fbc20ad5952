//! Abuse protection: per-address rate limits, the per-account login slow-down (the same for
//! unknown names, kept in the database), and the bounded hashing queue.

use std::time::Duration;

use gatehouse::config::{LoginThrottle, RateLimit};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_detail, spawn_app, spawn_app_with};
use crate::login_records::alice_under;

both_backends!(
    per_address_limits_answer_429_with_retry_after_then_refill,
    page_forms_over_the_limit_show_a_readable_page,
    brute_force_slows_the_account_down_while_others_still_log_in,
    unknown_and_known_names_get_the_same_answers_through_the_same_checks,
    the_slow_down_survives_a_restart,
    the_hundredth_failure_locks_until_a_reset_clears_it,
    a_stolen_session_guesses_the_password_no_faster_than_the_login_form,
    guesses_sent_at_once_meet_the_slow_down_one_by_one,
    a_signed_in_owner_opens_a_locked_account_by_changing_the_password,
);

const PASSWORD: &str = "correct horse battery";
const SLOWED: &str = "Too many failed login attempts for this account; try again later";

/// The status, `Retry-After` and `detail`: all a client learns from an answer.
async fn answer(response: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let retry = response.headers().get("retry-after");
    let retry = retry.map(|value| value.to_str().unwrap().to_string());
    (status, retry, response.json().await.unwrap())
}

/// Visits the page `from` and reads its form's CSRF token (the cookie stays in the client).
async fn csrf_token(app: &TestApp, from: &str) -> String {
    let page = app.client.get(app.url(from)).send().await.unwrap();
    crate::helpers::csrf_in(&page.text().await.unwrap())
}

/// Posts a page form as a browser would, with the CSRF token of `from`.
pub async fn submit_form(
    app: &TestApp,
    from: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let csrf = csrf_token(app, from).await;
    let mut form = fields.to_vec();
    form.push(("csrf_token", &csrf));
    app.client
        .post(app.url(action))
        .header("origin", &app.base)
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn per_address_limits_answer_429_with_retry_after_then_refill(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.abuse.rate_limits.login = RateLimit::per_minute(3);
        config.abuse.rate_limits.signup = RateLimit::per_minute(2);
        config.abuse.rate_limits.password_reset = RateLimit::per_minute(2);
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            app.login("nobody", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let headers = assert_detail(
        app.login("nobody", "guess").await,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
    )
    .await;
    assert_eq!(headers["retry-after"], "20", "one token back every 20 s");
    app.clock.advance(chrono::Duration::seconds(20));
    assert_eq!(
        app.login("nobody", "guess").await.status(),
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(app.signup("alice", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(app.signup("bob", PASSWORD).await.status(), StatusCode::OK);
    let over = app.signup("carol", PASSWORD).await;
    let headers = assert_detail(over, StatusCode::TOO_MANY_REQUESTS, "Too many requests").await;
    assert!(headers.contains_key("retry-after"));

    // Password-reset requests: known and unknown names get the same answer, then the limit.
    let known = answer(
        app.post_json("/password-reset", &json!({"username": "alice"}))
            .await,
    )
    .await;
    let unknown = answer(
        app.post_json("/password-reset", &json!({"username": "zed"}))
            .await,
    )
    .await;
    assert_eq!(known, unknown);
    assert_eq!(known.0, StatusCode::ACCEPTED);
    let over = app
        .post_json("/password-reset", &json!({"username": "alice"}))
        .await;
    assert_detail(over, StatusCode::TOO_MANY_REQUESTS, "Too many requests").await;

    // A new verification link is an email on request too: the same limit, shared.
    let alice = json!({"username": "alice"});
    let resend = || app.post_json("/verify-email/resend", &alice);
    assert_detail(
        resend().await,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
    )
    .await;
    app.clock.advance(chrono::Duration::seconds(60));
    for _ in 0..2 {
        assert_eq!(resend().await.status(), StatusCode::ACCEPTED);
    }
    assert_detail(
        resend().await,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
    )
    .await;

    // The first refusal of a run is in the audit trail, once.
    let recorded = app
        .fetch_text(
            "SELECT CAST(COUNT(*) AS TEXT) FROM events WHERE kind = $1 AND detail = 'rate limit: login'",
            "throttled",
        )
        .await;
    assert_eq!(recorded.as_deref(), Some("1"));
}

async fn page_forms_over_the_limit_show_a_readable_page(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.abuse.rate_limits.login = RateLimit::per_minute(1);
    })
    .await;
    let fields = [("username", "nobody"), ("password", "guess")];
    let first = submit_form(&app, "/login", "/login", &fields).await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let over = submit_form(&app, "/login", "/login", &fields).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().contains_key("retry-after"));
    assert!(
        over.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = over.text().await.unwrap();
    assert!(
        html.contains("Too many attempts from your network"),
        "{html}"
    );
}

async fn brute_force_slows_the_account_down_while_others_still_log_in(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("alice", PASSWORD).await;
    app.signup("bob", PASSWORD).await;
    let free = LoginThrottle::default().free_failures;
    let mut slowed_at = None;
    for attempt in 1..=20 {
        let (status, _, body) = answer(app.login("alice", &format!("guess {attempt}")).await).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body, json!({"detail": SLOWED}));
            slowed_at = Some(attempt);
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        slowed_at,
        Some(free + 1),
        "slowed down after {free} failures"
    );

    // Even the right password waits; another account is untouched.
    let (status, retry, _) = answer(app.login("alice", PASSWORD).await).await;
    assert_eq!(
        (status, retry.is_some()),
        (StatusCode::TOO_MANY_REQUESTS, true)
    );
    assert_eq!(app.login("bob", PASSWORD).await.status(), StatusCode::OK);

    // Once the delay has passed, the right password works and clears the count.
    app.clock.advance(chrono::Duration::seconds(3));
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
    assert_eq!(accounts_with_failures(&app).await, 0);
    assert_eq!(
        app.login("alice", "guess").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn unknown_and_known_names_get_the_same_answers_through_the_same_checks(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("alice", PASSWORD).await;
    for attempt in 0..8 {
        let checks_before = app.state.hasher.verifications();
        let known = answer(app.login("alice", "wrong guess").await).await;
        let checks_known = app.state.hasher.verifications() - checks_before;
        let checks_before = app.state.hasher.verifications();
        let unknown = answer(app.login("nobody", "wrong guess").await).await;
        let checks_unknown = app.state.hasher.verifications() - checks_before;
        assert_eq!(known, unknown, "attempt {attempt}");
        // A password check (the real hash, or the dummy one) runs for both, or for neither.
        assert_eq!(checks_known, checks_unknown, "attempt {attempt}");
        let throttled = known.0 == StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(checks_known, u64::from(!throttled));
    }
    // Neither name is stored in clear.
    for name in ["alice", "nobody"] {
        let stored = app
            .fetch_text(
                "SELECT name_hash FROM login_throttle WHERE name_hash = $1",
                name,
            )
            .await;
        assert_eq!(stored, None);
    }
}

async fn the_slow_down_survives_a_restart(backend: Backend) {
    let first = spawn_app(backend).await;
    first.signup("alice", PASSWORD).await;
    for _ in 0..LoginThrottle::default().free_failures {
        first.login("alice", "wrong guess").await;
    }
    let url = first.state.config.database_url.clone();
    let second = spawn_app_with(backend, move |config| config.database_url = url).await;
    let (status, retry, body) = answer(second.login("alice", PASSWORD).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry.is_some());
    assert_eq!(body, json!({"detail": SLOWED}));
}

async fn the_hundredth_failure_locks_until_a_reset_clears_it(backend: Backend) {
    let app = alice_under(backend, 200, Duration::from_secs(1), 1000).await;
    // Never more than 100 consecutive failures, whatever the configuration says.
    for _ in 0..100 {
        assert_eq!(
            app.login("alice", "wrong guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    app.clock.advance(chrono::Duration::days(30));
    let (status, retry, body) = answer(app.login("alice", PASSWORD).await).await;
    assert_eq!((status, retry), (StatusCode::TOO_MANY_REQUESTS, None));
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("reset the password")
    );
    // What a password reset does: the account opens again at once.
    gatehouse::auth::throttle::clear(app.state.store.as_ref(), "alice")
        .await
        .unwrap();
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
}

/// Guesses sent all at once are checked in turn, each after the last one's failure was
/// counted: no more get past the slow-down than if they had come one by one.
async fn guesses_sent_at_once_meet_the_slow_down_one_by_one(backend: Backend) {
    const GUESSES: usize = 12;
    let app = spawn_app(backend).await;
    app.signup("alice", PASSWORD).await;
    let free = LoginThrottle::default().free_failures as usize;
    let guesses: Vec<String> = (0..GUESSES).map(|n| format!("guess {n}")).collect();
    let answers =
        futures::future::join_all(guesses.iter().map(|guess| app.login("alice", guess))).await;
    let statuses: Vec<StatusCode> = answers.iter().map(reqwest::Response::status).collect();
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(
        (
            count(StatusCode::UNAUTHORIZED),
            count(StatusCode::TOO_MANY_REQUESTS)
        ),
        (free, GUESSES - free),
        "{statuses:?}"
    );
    assert_eq!(accounts_with_failures(&app).await, 1);
    assert_eq!(app.state.password_checks.accounts_in_line(), 0);
}

/// Someone else's guesses have locked the account; its owner, still signed in, can change the
/// password (which opens it again) after the longest delay, as the session proves a sign-in.
async fn a_signed_in_owner_opens_a_locked_account_by_changing_the_password(backend: Backend) {
    let app = alice_under(backend, 5, Duration::from_secs(1), 5).await;
    let token = app.token_for("alice", PASSWORD).await;
    for _ in 0..5 {
        let guess = app.login("alice", "wrong guess").await;
        assert_eq!(guess.status(), StatusCode::UNAUTHORIZED);
    }
    let (status, retry, _) = answer(app.login("alice", PASSWORD).await).await;
    assert_eq!((status, retry), (StatusCode::TOO_MANY_REQUESTS, None));

    let change = |current: &'static str| {
        app.client
            .post(app.url("/users/me/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": current, "new_password": "a brand new passphrase"}))
            .send()
    };
    let (status, retry, _) = answer(change(PASSWORD).await.unwrap()).await;
    assert_eq!(
        (status, retry.is_some()),
        (StatusCode::TOO_MANY_REQUESTS, true)
    );
    app.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(change(PASSWORD).await.unwrap().status(), StatusCode::OK);
    assert_eq!(accounts_with_failures(&app).await, 0);
    let login = app.login("alice", "a brand new passphrase").await;
    assert_eq!(login.status(), StatusCode::OK);
}

/// How many accounts (or typed names) have failed logins on record.
async fn accounts_with_failures(app: &TestApp) -> u32 {
    let rows = app
        .fetch_text(
            "SELECT CAST(COUNT(*) AS TEXT) FROM login_throttle WHERE failures > 0 AND $1 = $1",
            "",
        )
        .await;
    rows.unwrap().parse().unwrap()
}

/// Changing the password asks for the current one. Whoever holds a stolen token gets the
/// same slow-down there as at the login form, counted on the same record.
async fn a_stolen_session_guesses_the_password_no_faster_than_the_login_form(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("alice", PASSWORD).await;
    let token = app.token_for("alice", PASSWORD).await;
    let change = |current: &str| {
        app.client
            .post(app.url("/users/me/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": current, "new_password": "a brand new passphrase"}))
            .send()
    };
    let free = LoginThrottle::default().free_failures;
    for attempt in 1..=free {
        assert_detail(
            change(&format!("guess {attempt}")).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "Current password is incorrect",
        )
        .await;
    }
    let (status, retry, body) = answer(change("one guess too many").await.unwrap()).await;
    assert_eq!(
        (status, retry.is_some()),
        (StatusCode::TOO_MANY_REQUESTS, true)
    );
    assert_eq!(body, json!({"detail": SLOWED}));
    // Even the right password waits, here and at the login form.
    let (status, _, _) = answer(change(PASSWORD).await.unwrap()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, _) = answer(app.login("alice", PASSWORD).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Once the delay has passed, the right password works and clears the count.
    app.clock.advance(chrono::Duration::seconds(3));
    assert_eq!(change(PASSWORD).await.unwrap().status(), StatusCode::OK);
    assert_eq!(accounts_with_failures(&app).await, 0);
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.abuse.hash_max_wait = Duration::ZERO;
    })
    .await;
    // Every slot busy at once: logins that cannot get one in time are refused, not queued.
    let logins = (0..24).map(|n| {
        let app = &app;
        async move { answer(app.login(&format!("user{n}"), "some guess").await).await }
    });
    let answers = futures::future::join_all(logins).await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!busy.is_empty(), "some logins waited too long: {answers:?}");
    for (_, retry, body) in busy {
        assert_eq!(retry.as_deref(), Some("2"));
        assert_eq!(
            body,
            &json!({"detail": "Too many logins in progress; try again in a moment"})
        );
    }

    // The login page refuses the same way, with the same wait. One visit gives the form's
    // token (and its cookie, which the posts share).
    let csrf = csrf_token(&app, "/login").await;
    let forms = (0..24).map(|n| {
        let (app, csrf) = (&app, &csrf);
        async move {
            let name = format!("user{n}");
            let fields = [
                ("username", name.as_str()),
                ("password", "some guess"),
                ("csrf_token", csrf.as_str()),
            ];
            let post = app
                .client
                .post(app.url("/login"))
                .header("origin", &app.base);
            let response = post.form(&fields).send().await.unwrap();
            let retry = response.headers().get("retry-after").cloned();
            (response.status(), retry, response.text().await.unwrap())
        }
    });
    let pages = futures::future::join_all(forms).await;
    let statuses: Vec<_> = pages.iter().map(|(status, _, _)| *status).collect();
    let refused = [StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE];
    assert!(statuses.iter().all(|s| refused.contains(s)), "{statuses:?}");
    let busy: Vec<_> = pages
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(
        !busy.is_empty(),
        "some page logins waited too long: {statuses:?}"
    );
    for (_, retry, html) in busy {
        assert_eq!(retry.as_ref().map(|v| v.to_str().unwrap()), Some("2"));
        assert!(
            html.contains("The service is very busy right now."),
            "{html}"
        );
    }
}
