//! The email flows end to end through a real SMTP server: password reset, verification,
//! email change, and the verification requirement.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, TestDb, assert_detail, csrf_in, hidden_field, spawn_app, spawn_app_with,
};
use crate::mail::SmtpSink;
use crate::metrics::{sample, scrape};

both_backends!(
    password_reset_by_email_ends_sessions_and_is_single_use,
    reset_answers_the_same_for_unknown_accounts,
    a_newer_reset_request_and_expiry_invalidate_a_token,
    signup_sends_a_verification_link,
    required_verification_refuses_login_until_confirmed,
    email_change_applies_only_when_the_new_address_is_confirmed,
    a_user_deleted_while_links_are_requested_goes_with_them,
    a_reset_by_address_reads_the_email_index,
);

pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const NEW_PASSWORD: &str = "another quite long passphrase";
const RESET_SENT: &str =
    "If an account matches, a link to reset its password has been sent to its email address.";

pub(crate) async fn app_with_smtp(
    backend: Backend,
    require_verification: bool,
) -> (TestApp, SmtpSink) {
    let smtp = SmtpSink::start();
    let url = smtp.url.clone();
    let app = spawn_app_with(backend, move |config| {
        config.mail.smtp_url = Some(url);
        config.mail.require_verification = require_verification;
    })
    .await;
    (app, smtp)
}

pub(crate) async fn signup_with_email(app: &TestApp, username: &str, email: &str) {
    let response = app
        .post_json(
            "/users/",
            &json!({"username": username, "password": PASSWORD, "email": email}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// Opens an emailed link as a browser would: the link moves its token into a cookie (which
/// the client keeps) and redirects to its bare page; the page's answer.
pub(crate) async fn open_link(app: &TestApp, link: &str) -> reqwest::Response {
    let opened = app.client.get(link).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER, "{link}");
    let bare = opened.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap();
    assert!(!bare.contains("token"), "{bare}");
    app.client.get(app.url(bare)).send().await.unwrap()
}

/// Opens an address confirmation link as a person would: the page, then its button. The
/// page's answer if it refuses the link, else the button's.
pub(crate) async fn confirm_address(app: &TestApp, link: &str) -> reqwest::Response {
    let page = open_link(app, link).await;
    if page.status() != StatusCode::OK {
        return page;
    }
    let html = page.text().await.unwrap();
    let fields = [
        ("token", hidden_field(&html, "token")),
        ("csrf_token", csrf_in(&html)),
    ];
    let post = app.client.post(app.url("/verify-email"));
    post.header("origin", &app.base)
        .form(&fields)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn request_reset(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/password-reset", &body).await
}

pub(crate) async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/password-reset/confirm",
        &json!({"token": token, "new_password": password}),
    )
    .await
}

async fn password_reset_by_email_ends_sessions_and_is_single_use(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, false).await;
    signup_with_email(&app, "alice", "alice@example.com").await;
    smtp.expect("alice@example.com", "Confirm your email").await;
    let old_session = app.token_for("alice", PASSWORD).await;

    let response = request_reset(&app, json!({"email": "alice@example.com"})).await;
    assert_detail(response, StatusCode::ACCEPTED, RESET_SENT).await;
    let mail = smtp
        .expect("alice@example.com", "Reset your Gatehouse password")
        .await;
    assert!(
        mail.raw.contains("Content-Type: text/plain")
            && mail.raw.contains("Content-Type: text/html"),
        "two parts"
    );
    let link = mail.link("/reset-password");
    assert!(
        link.starts_with(&app.base),
        "the link points at the service: {link}"
    );
    let token = mail.token("/reset-password");
    assert!(token.len() >= 43, "256 bits");
    assert_eq!(
        app.fetch_text(
            "SELECT token_hash FROM email_tokens WHERE token_hash = $1",
            &token
        )
        .await,
        None,
        "only a hash is stored"
    );

    assert_eq!(
        confirm_reset(&app, &token, "short").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let done = confirm_reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(
        done.status(),
        StatusCode::OK,
        "a weak attempt does not burn the token"
    );
    assert_eq!(
        app.get_me(&old_session).await.status(),
        StatusCode::UNAUTHORIZED,
        "old sessions ended"
    );
    assert_eq!(
        app.login("alice", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("alice", NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    smtp.expect("alice@example.com", "password was changed")
        .await;

    let again = confirm_reset(&app, &token, "yet another long passphrase").await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "single use");
}

async fn reset_answers_the_same_for_unknown_accounts(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, false).await;
    signup_with_email(&app, "alice", "alice@example.com").await;
    smtp.expect("alice@example.com", "Confirm").await;
    for body in [
        json!({"email": "alice@example.com"}),
        json!({"email": "nobody@example.com"}),
        json!({"username": "alice"}),
        json!({"username": "nobody"}),
    ] {
        let response = request_reset(&app, body.clone()).await;
        assert_detail(response, StatusCode::ACCEPTED, RESET_SENT).await;
    }
    smtp.expect("alice@example.com", "Reset").await;
    smtp.expect("alice@example.com", "Reset").await;
    assert_eq!(smtp.count_for("nobody@example.com"), 0);
    assert_eq!(
        request_reset(&app, json!({})).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn a_newer_reset_request_and_expiry_invalidate_a_token(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, false).await;
    signup_with_email(&app, "alice", "alice@example.com").await;
    smtp.expect("alice@example.com", "Confirm").await;
    request_reset(&app, json!({"username": "alice"})).await;
    let first = smtp
        .expect("alice@example.com", "Reset")
        .await
        .token("/reset-password");
    request_reset(&app, json!({"username": "alice"})).await;
    let second = smtp
        .expect("alice@example.com", "Reset")
        .await
        .token("/reset-password");
    assert_eq!(
        confirm_reset(&app, &first, NEW_PASSWORD).await.status(),
        StatusCode::BAD_REQUEST,
        "superseded"
    );

    app.clock.advance(Duration::minutes(31));
    assert_eq!(
        confirm_reset(&app, &second, NEW_PASSWORD).await.status(),
        StatusCode::BAD_REQUEST,
        "expired"
    );
    assert_eq!(
        app.login("alice", PASSWORD).await.status(),
        StatusCode::OK,
        "nothing changed"
    );
}

async fn signup_sends_a_verification_link(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, false).await;
    signup_with_email(&app, "alice", "alice@example.com").await;
    let token = app.token_for("alice", PASSWORD).await;
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(me["email_verified"], false);

    let mail = smtp
        .expect("alice@example.com", "Confirm your email address")
        .await;
    let link = mail.link("/verify-email");
    // Fetching the link (a mail scanner, a link preview) shows a button and confirms nothing.
    for _ in 0..2 {
        let page = open_link(&app, &link).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("Confirm this address"));
    }
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(me["email_verified"], false);
    let confirmed = confirm_address(&app, &link).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let cleared = confirmed.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap();
    assert!(
        cleared.starts_with("gatehouse_verify=;") && cleared.contains("Max-Age=0"),
        "the link's cookie goes with it: {cleared}"
    );
    assert!(confirmed.text().await.unwrap().contains("is now confirmed"));
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);
    let used = open_link(&app, &link).await;
    assert_eq!(used.status(), StatusCode::BAD_REQUEST, "single use");
    let forgotten = used.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap();
    assert!(
        forgotten.contains("Max-Age=0"),
        "a dead link's cookie goes: {forgotten}"
    );
    let events = "SELECT COUNT(*) FROM events WHERE kind = $1";
    assert_eq!(app.count(events, "email_verified").await, 1);

    // The button posts with the page's CSRF token, like every form.
    let forged = app
        .client
        .post(app.url("/verify-email"))
        .form(&[("token", mail.token("/verify-email"))])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

async fn required_verification_refuses_login_until_confirmed(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, true).await;
    let no_email = app.signup("bob", PASSWORD).await;
    assert_eq!(
        no_email.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "an address is required"
    );
    signup_with_email(&app, "alice", "alice@example.com").await;
    let first = smtp.expect("alice@example.com", "Confirm").await;
    let refused = app.login("alice", PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("not verified"));
    let recorded = app
        .fetch_text(
            "SELECT CAST(COUNT(*) AS TEXT) || ' ' || COALESCE(MIN(e.detail), '') \
             FROM events e JOIN users u ON u.id = e.user_id \
             WHERE u.username = $1 AND e.kind = 'login_failure'",
            "alice",
        )
        .await;
    assert_eq!(
        recorded.as_deref(),
        Some("1 api: address not confirmed"),
        "one refusal, on alice's activity"
    );
    let logins = |text: &str, outcome: &str| {
        sample(
            text,
            &format!(r#"gatehouse_logins_total{{channel="api",outcome="{outcome}"}}"#),
        )
    };
    let text = scrape(&app).await;
    assert_eq!(logins(&text, "unverified"), Some(1.0), "{text}");
    assert_eq!(
        logins(&text, "success"),
        Some(0.0),
        "no session started: {text}"
    );

    let resend = app
        .post_json("/verify-email/resend", &json!({"username": "alice"}))
        .await;
    assert_eq!(resend.status(), StatusCode::ACCEPTED);
    let second = smtp.expect("alice@example.com", "Confirm").await;
    assert_eq!(
        confirm_address(&app, &first.link("/verify-email"))
            .await
            .status(),
        StatusCode::BAD_REQUEST,
        "superseded"
    );
    assert_eq!(
        confirm_address(&app, &second.link("/verify-email"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
    let text = scrape(&app).await;
    assert_eq!(logins(&text, "success"), Some(1.0), "{text}");
}

async fn email_change_applies_only_when_the_new_address_is_confirmed(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, false).await;
    signup_with_email(&app, "alice", "old@example.com").await;
    smtp.expect("old@example.com", "Confirm").await;
    let token = app.token_for("alice", PASSWORD).await;
    let patch = |body: Value| {
        app.client
            .patch(app.url("/users/me"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    // Each refusal changes nothing, not even the name sent beside the address.
    let wrong = patch(json!({
        "email": "new@example.com", "current_password": "wrong", "full_name": "Mallory"
    }))
    .await
    .unwrap();
    assert_detail(
        wrong,
        StatusCode::BAD_REQUEST,
        "Current password is incorrect",
    )
    .await;
    let missing = patch(json!({"email": "new@example.com", "full_name": "Mallory"}))
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let invalid = patch(json!({
        "email": "not an address", "current_password": PASSWORD, "full_name": "Mallory"
    }))
    .await
    .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(me["full_name"], Value::Null, "{me}");

    let accepted = patch(
        json!({"email": "new@example.com", "current_password": PASSWORD, "full_name": "Alice A."}),
    )
    .await
    .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    let body: Value = accepted.json().await.unwrap();
    assert_eq!(
        body["email"], "old@example.com",
        "unchanged until confirmed"
    );
    assert_eq!(body["full_name"], "Alice A.");
    smtp.expect("old@example.com", "change of your email address")
        .await;
    let confirm = smtp.expect("new@example.com", "Confirm").await;
    assert_eq!(
        confirm_address(&app, &confirm.link("/verify-email"))
            .await
            .status(),
        StatusCode::OK
    );
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(
        (me["email"].as_str(), me["email_verified"].as_bool()),
        (Some("new@example.com"), Some(true))
    );
}

/// Links requested for a user at the moment the user is deleted: each request lands before
/// the deletion (and goes with the user) or finds no user, and the deletion always succeeds.
/// On PostgreSQL the two once met in opposite lock orders and the deletion failed (a 500).
async fn a_user_deleted_while_links_are_requested_goes_with_them(backend: Backend) {
    use gatehouse::clock::Clock as _;
    use gatehouse::store::{EmailTokenPurpose, NewEmailToken, StoreError};
    let app = crate::helpers::spawn_app(backend).await;
    let store = app.state.store.as_ref();
    let now = app.clock.now();
    for round in 0..20 {
        let name = format!("user{round}");
        app.signup(&name, PASSWORD).await;
        let user_id = app.user_id(&name).await;
        let link = |n: usize| NewEmailToken {
            user_id,
            purpose: EmailTokenPurpose::PasswordReset,
            token_hash: format!("{round:032}{n:032}"),
            email: None,
            created_at: now,
            expires_at: now + Duration::hours(1),
        };
        // An unused link, which each new request marks superseded.
        store.create_email_token(link(0)).await.unwrap();
        let (deleted, requested) = tokio::join!(
            store.delete_user(user_id),
            futures::future::join_all((1..4).map(|n| store.create_email_token(link(n)))),
        );
        assert!(deleted.unwrap(), "round {round}");
        for outcome in requested {
            assert!(
                matches!(outcome, Ok(()) | Err(StoreError::NotFound)),
                "round {round}: {outcome:?}"
            );
        }
        let left = app
            .fetch_text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM email_tokens WHERE token_hash LIKE $1",
                &format!("{round:032}%"),
            )
            .await;
        assert_eq!(left.as_deref(), Some("0"), "round {round}");
    }
}

/// The lookup of a reset asked for by address (`ProfileStore::users_by_email`) reads the
/// index, here among 20,000 users, not every user: on PostgreSQL as the planner sees the
/// table after the migration's `ANALYZE`, for an address nobody has.
async fn a_reset_by_address_reads_the_email_index(backend: Backend) {
    let app = spawn_app(backend).await;
    const LOOKUP: &str = "SELECT id FROM users WHERE LOWER(email) = LOWER($1) ORDER BY id LIMIT 10";
    let plan = match &app.db {
        TestDb::Sqlite(pool) => {
            let explain = format!("EXPLAIN QUERY PLAN {LOOKUP}");
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(explain))
                .bind("nobody@example.com")
                .fetch_all(pool)
                .await
                .unwrap();
            rows.into_iter().map(|row| row.3).collect::<Vec<_>>()
        }
        TestDb::Postgres { pool, .. } => {
            sqlx::query(
                "INSERT INTO users (username, username_key, email, hashed_password, created_at, updated_at) \
                 SELECT 'u' || i, 'u' || i, 'u' || i || '@Example.com', 'x', now(), now() \
                 FROM generate_series(1, 20000) AS i",
            )
            .execute(pool)
            .await
            .unwrap();
            sqlx::query("ANALYZE users").execute(pool).await.unwrap();
            let explain = format!("EXPLAIN {LOOKUP}");
            sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
                .bind("nobody@example.com")
                .fetch_all(pool)
                .await
                .unwrap()
        }
    };
    let plan = plan.join("\n");
    assert!(plan.contains("users_email_lower_idx"), "{plan}");
}
