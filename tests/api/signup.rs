use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, assert_detail, spawn_app};

both_backends!(
    signup_returns_the_user_without_any_hash,
    taken_username_is_a_409_whatever_the_case,
    concurrent_signups_of_one_name_create_one_user,
    invalid_fields_are_422_in_fastapi_shape,
);

async fn signup_returns_the_user_without_any_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post_json(
            "/users/",
            &json!({"username": "foo", "password": "long enough phrase", "email": "foo@example.com", "full_name": "Foo Bar"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = app.documented_json("POST", "/users/", response).await;
    assert_eq!(
        body,
        json!({"id": body["id"], "username": "foo", "email": "foo@example.com", "email_verified": false, "full_name": "Foo Bar", "disabled": false})
    );
    assert!(body["id"].as_i64().unwrap() > 0);
    let hash = app.stored_hash("foo").await;
    assert!(
        hash.starts_with("$argon2id$v=19$"),
        "stored as Argon2id: {hash}"
    );
}

async fn taken_username_is_a_409_whatever_the_case(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.signup("Alice", "first good phrase").await.status(),
        StatusCode::OK
    );
    for variant in ["Alice", "alice", "ALICE", "ＡＬＩＣＥ"] {
        let response = app.signup(variant, "second good phrase").await;
        assert_detail(
            response,
            StatusCode::CONFLICT,
            "Username already registered",
        )
        .await;
    }
}

async fn concurrent_signups_of_one_name_create_one_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let attempts = (0..6).map(|i| {
        let name = if i % 2 == 0 { "racer" } else { "RACER" };
        app.signup(name, "a fine passphrase")
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        5,
        "{statuses:?}"
    );
}

async fn invalid_fields_are_422_in_fastapi_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (
            json!({"username": "ab", "password": "long enough phrase"}),
            "username",
            "value_error",
        ),
        (
            json!({"username": "has space", "password": "long enough phrase"}),
            "username",
            "value_error",
        ),
        (
            json!({"username": "valid", "password": "short"}),
            "password",
            "value_error",
        ),
        (
            json!({"username": "valid", "password": "x".repeat(129)}),
            "password",
            "value_error",
        ),
        (
            json!({"username": "valid", "password": "long enough phrase", "email": "nope"}),
            "email",
            "value_error",
        ),
        (
            // An address no message can be sent to: refused here, not by the mailer later.
            json!({"username": "valid", "password": "long enough phrase", "email": "john..doe@example.com"}),
            "email",
            "value_error",
        ),
        (
            json!({"password": "long enough phrase"}),
            "username",
            "missing",
        ),
        (json!({"username": "valid"}), "password", "missing"),
        (
            json!({"username": 42, "password": "long enough phrase"}),
            "username",
            "type_error",
        ),
    ];
    for (body, field, kind) in cases {
        let response = app.post_json("/users/", &body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let detail = app.documented_json("POST", "/users/", response).await;
        let first = &detail["detail"][0];
        assert_eq!(first["loc"], json!(["body", field]), "{body} -> {detail}");
        assert_eq!(first["type"], kind, "{body} -> {detail}");
        assert!(first["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let count = app
        .fetch_text(
            "SELECT CAST(COUNT(*) AS TEXT) FROM users WHERE $1 = $1",
            "x",
        )
        .await;
    assert_eq!(count.as_deref(), Some("0"), "no invalid user was stored");
}

/// A sign-up whose confirmation link cannot be stored (a trigger plays the database being
/// away as the link is written) still answers 200: the account exists, and a 503 would make
/// its retry a 409. The link can be sent again once the database answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_whose_link_cannot_be_stored_still_creates_the_account() {
    if !Backend::postgres_available() {
        return;
    }
    let (app, smtp) = crate::email::app_with_smtp(Backend::Postgres, false).await;
    app.postgres_away_on("INSERT", "email_tokens").await;
    let body =
        json!({"username": "alice", "password": "long enough phrase", "email": "a@example.com"});
    let response = app.post_json("/users/", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["username"], "alice");
    let links = "SELECT COUNT(*) FROM email_tokens WHERE $1 = $1";
    assert_eq!(app.count(links, "").await, 0, "no link was stored");

    app.execute_sql("DROP TRIGGER away ON email_tokens").await;
    let resend = json!({"username": "alice"});
    let resent = app.post_json("/verify-email/resend", &resend).await;
    assert_eq!(resent.status(), StatusCode::ACCEPTED);
    smtp.expect("a@example.com", "Confirm").await;
}
