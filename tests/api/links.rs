//! What a new password or a confirmed address does to the links mailed before it, and that
//! each change is all or nothing: one that cannot finish leaves the password, the sessions
//! and the link as they were, for the retry. Also the email flows' audit events.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::email::{
    NEW_PASSWORD, PASSWORD, app_with_smtp, confirm_address, confirm_reset, request_reset,
    signup_with_email,
};
use crate::helpers::{Backend, TestApp, spawn_app_with, wait_for};
use crate::mail::{Received, SmtpSink};

both_backends!(
    a_new_password_voids_the_links_mailed_before,
    a_confirmed_address_voids_the_reset_links_sent_to_the_old_one,
    the_email_flows_are_in_the_audit_trail,
);

const THIRD_PASSWORD: &str = "yet another long passphrase";

/// Asks for alice's address to become `email`, with her `password`; the link mailed there.
async fn request_address_change(
    (app, smtp): (&TestApp, &SmtpSink),
    token: &str,
    password: &str,
    email: &str,
) -> String {
    let body = json!({"email": email, "current_password": password});
    let response = app
        .client
        .patch(app.url("/users/me"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    smtp.expect(email, "Confirm").await.link("/verify-email")
}

/// Alice, signed up with `address` and logged in, with a reset link mailed there and a
/// change to `new_address` waiting: her token, the reset mail and the change's link.
async fn alice_with_two_links(
    (app, smtp): (&TestApp, &SmtpSink),
    address: &str,
    new_address: &str,
) -> (String, Received, String) {
    signup_with_email(app, "alice", address).await;
    smtp.expect(address, "Confirm").await;
    let token = app.token_for("alice", PASSWORD).await;
    request_reset(app, json!({"username": "alice"})).await;
    let reset = smtp.expect(address, "Reset").await;
    let change = request_address_change((app, smtp), &token, PASSWORD, new_address).await;
    (token, reset, change)
}

async fn open(app: &TestApp, link: &str) -> StatusCode {
    confirm_address(app, link).await.status()
}

async fn alices_address(app: &TestApp, token: &str) -> Value {
    let me: Value = app.get_me(token).await.json().await.unwrap();
    me["email"].clone()
}

/// A reset link, or an address change, waiting in a mailbox someone else may read stops
/// working when the password changes: by the user, or by another reset.
async fn a_new_password_voids_the_links_mailed_before(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, false).await;
    let (token, reset, change) =
        alice_with_two_links((&app, &smtp), "alice@example.com", "mallory@example.com").await;

    let body = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
    let changed = app.post_auth("/users/me/password", &token, &body).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let token = app.token_for("alice", NEW_PASSWORD).await;
    let used = confirm_reset(&app, &reset.token("/reset-password"), THIRD_PASSWORD).await;
    assert_eq!(used.status(), StatusCode::BAD_REQUEST, "the reset link");
    assert_eq!(
        open(&app, &change).await,
        StatusCode::BAD_REQUEST,
        "the change"
    );
    assert_eq!(alices_address(&app, &token).await, "alice@example.com");

    // A reset voids the links mailed before it too, all but its own.
    let mallory = "mallory@example.com";
    let change = request_address_change((&app, &smtp), &token, NEW_PASSWORD, mallory).await;
    request_reset(&app, json!({"username": "alice"})).await;
    let reset = smtp.expect("alice@example.com", "Reset").await;
    let done = confirm_reset(&app, &reset.token("/reset-password"), THIRD_PASSWORD).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(open(&app, &change).await, StatusCode::BAD_REQUEST);
    let token = app.token_for("alice", THIRD_PASSWORD).await;
    assert_eq!(alices_address(&app, &token).await, "alice@example.com");
    let unused = "SELECT COUNT(*) FROM email_tokens WHERE used_at IS NULL AND $1 = $1";
    assert_eq!(app.count(unused, "").await, 0);
}

/// Once a new address is confirmed, the old one proves nothing: reset links sent to it stop
/// working.
async fn a_confirmed_address_voids_the_reset_links_sent_to_the_old_one(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, false).await;
    let (token, reset, change) =
        alice_with_two_links((&app, &smtp), "old@example.com", "new@example.com").await;

    assert_eq!(open(&app, &change).await, StatusCode::OK);
    assert_eq!(alices_address(&app, &token).await, "new@example.com");
    let used = confirm_reset(&app, &reset.token("/reset-password"), NEW_PASSWORD).await;
    assert_eq!(used.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.login("alice", PASSWORD).await.status(), StatusCode::OK);
}

/// A reset link mailed, a password reset and an address confirmed each leave an event on
/// the account, as a password change does.
async fn the_email_flows_are_in_the_audit_trail(backend: Backend) {
    let (app, smtp) = app_with_smtp(backend, false).await;
    signup_with_email(&app, "alice", "alice@example.com").await;
    let confirm = smtp.expect("alice@example.com", "Confirm").await;
    let events = "SELECT COUNT(*) FROM events e JOIN users u ON u.id = e.user_id \
                  WHERE u.username = 'alice' AND e.kind = $1";
    let detail = "SELECT detail FROM events WHERE kind = $1";
    assert_eq!(
        open(&app, &confirm.link("/verify-email")).await,
        StatusCode::OK
    );
    assert_eq!(app.count(events, "email_verified").await, 1);

    // Nobody is mailed for an unknown name, and nothing is recorded.
    request_reset(&app, json!({"username": "nobody"})).await;
    request_reset(&app, json!({"username": "alice"})).await;
    let reset = smtp.expect("alice@example.com", "Reset").await;
    // The link is mailed first, then the event is written.
    wait_for("the request's event", Duration::from_secs(10), async || {
        app.count(events, "password_reset_requested").await == 1
    })
    .await;
    let requested = app.fetch_text(detail, "password_reset_requested").await;
    assert_eq!(requested.as_deref(), Some("api"));
    let unattributed = "SELECT COUNT(*) FROM events WHERE user_id IS NULL AND kind = $1";
    assert_eq!(app.count(unattributed, "password_reset_requested").await, 0);

    let done = confirm_reset(&app, &reset.token("/reset-password"), NEW_PASSWORD).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(app.count(events, "password_reset").await, 1);
    let reset = app.fetch_text(detail, "password_reset").await;
    assert_eq!(reset.as_deref(), Some("api"));
}

/// A reset refused because every hashing slot is busy (a 503: try again) has not used its
/// link: the retry works. The link used to be spent before the hash was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_refused_for_want_of_a_hashing_slot_keeps_its_link() {
    let smtp = SmtpSink::start();
    let url = smtp.url.clone();
    let app = spawn_app_with(Backend::Sqlite, move |config| {
        config.mail.smtp_url = Some(url);
        config.abuse.hash_max_wait = Duration::ZERO;
        // Long enough hashes (a second or so) to hold every slot while the reset arrives.
        config.hash_params.memory_kib = 8192;
        config.hash_params.iterations = 256;
    })
    .await;
    signup_with_email(&app, "alice", "alice@example.com").await;
    request_reset(&app, json!({"username": "alice"})).await;
    let token = smtp
        .expect("alice@example.com", "Reset")
        .await
        .token("/reset-password");

    let hasher = app.state.hasher.clone();
    let holders: Vec<_> = (0..hasher.slots())
        .map(|_| {
            let hasher = hasher.clone();
            let password = gatehouse::domain::Password::attempt("held".into()).unwrap();
            tokio::spawn(async move { hasher.hash(&password).await.unwrap() })
        })
        .collect();
    wait_for("every slot taken", Duration::from_secs(10), async || {
        hasher.slots_in_use() == hasher.slots()
    })
    .await;
    let refused = confirm_reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "2");
    for holder in holders {
        holder.await.unwrap();
    }

    let retried = confirm_reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(
        app.login("alice", NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}

/// A new password whose sessions cannot be ended is not set: the database refuses the
/// sessions' deletion (PostgreSQL's "cannot connect now", raised by a trigger), and the
/// change, reset or password change alike, answers 503 and leaves everything as it was,
/// link included. Before, the password changed, the sessions stayed (a thief's with them),
/// and the reset link was spent, so the retry could not end them either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_whose_sessions_cannot_end_changes_nothing() {
    if !Backend::postgres_available() {
        return;
    }
    let (app, smtp) = app_with_smtp(Backend::Postgres, false).await;
    signup_with_email(&app, "alice", "alice@example.com").await;
    let thief = app.token_for("alice", PASSWORD).await;
    let own = app.token_for("alice", PASSWORD).await;
    request_reset(&app, json!({"username": "alice"})).await;
    let token = smtp
        .expect("alice@example.com", "Reset")
        .await
        .token("/reset-password");
    app.postgres_away_on("DELETE", "sessions").await;
    let hash = app.stored_hash("alice").await;

    let reset = confirm_reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(reset.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
    let changed = app.post_auth("/users/me/password", &own, &body).await;
    assert_eq!(changed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.stored_hash("alice").await, hash, "the password");
    assert_eq!(
        app.get_me(&thief).await.status(),
        StatusCode::OK,
        "the sessions"
    );
    let unused = "SELECT COUNT(*) FROM email_tokens WHERE used_at IS NULL AND purpose = $1";
    assert_eq!(app.count(unused, "password_reset").await, 1, "the link");

    app.execute_sql("DROP TRIGGER away ON sessions").await;
    let retried = confirm_reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(app.get_me(&thief).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("alice", NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}
