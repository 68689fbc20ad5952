use gatehouse::clock::Clock as _;
use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, assert_detail, spawn_app};

/// A bcrypt hash of "tutorial-password" made by passlib's `CryptContext(schemes=["bcrypt"])`,
/// exactly as the tutorial's backend stores it.
const PASSLIB_BCRYPT_HASH: &str = "$2b$12$m1Pq/uMjA90NW2y6a5OfQOX3HxhdNFngefw7VP7KS0GshP3lpGFEe";

both_backends!(
    login_with_a_urlencoded_form_returns_a_bearer_token,
    login_with_multipart_form_data_as_the_tutorial_page_sends_it,
    wrong_password_and_unknown_user_get_the_same_401,
    disabled_user_cannot_log_in,
    legacy_bcrypt_hash_logs_in_and_is_upgraded_to_argon2id,
    login_form_errors_are_4xx,
    a_login_writes_its_session_refresh_token_and_event_together,
);

async fn login_with_a_urlencoded_form_returns_a_bearer_token(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("foo", "sesame street lamp").await;
    let response = app
        .client
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "foo"),
            ("password", "sesame street lamp"),
            ("scope", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = app.documented_json("POST", "/token", response).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1800);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    assert_eq!(app.get_me(token).await.status(), StatusCode::OK);
}

async fn login_with_multipart_form_data_as_the_tutorial_page_sends_it(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("foo", "sesame street lamp").await;
    let form = Form::new()
        .text("username", "foo")
        .text("password", "sesame street lamp");
    let response = app
        .client
        .post(app.url("/token"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = app.documented_json("POST", "/token", response).await;
    let me: Value = app
        .get_me(body["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "foo");
}

async fn wrong_password_and_unknown_user_get_the_same_401(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("foo", "sesame street lamp").await;
    for (user, password) in [
        ("foo", "wrong-password"),
        ("nobody", "sesame street lamp"),
        ("foo", ""),
    ] {
        let headers = assert_detail(
            app.login(user, password).await,
            StatusCode::UNAUTHORIZED,
            "Incorrect username or password",
        )
        .await;
        assert_eq!(headers["www-authenticate"], "Bearer");
    }
    // The username is matched case-insensitively, the password exactly.
    assert_eq!(
        app.login("FOO", "sesame street lamp").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("foo", "PASSWORD").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn disabled_user_cannot_log_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("sleepy").await;
    app.execute(
        "UPDATE users SET disabled = TRUE WHERE username = $1",
        "sleepy",
    )
    .await;
    assert_detail(
        app.login("sleepy", "correct horse battery").await,
        StatusCode::BAD_REQUEST,
        "Inactive user",
    )
    .await;
    assert_detail(
        app.get_me(&token).await,
        StatusCode::BAD_REQUEST,
        "Inactive user",
    )
    .await;
    // A wrong password still says only that the credentials are wrong.
    assert_eq!(
        app.login("sleepy", "not the password").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn legacy_bcrypt_hash_logs_in_and_is_upgraded_to_argon2id(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("legacy", "placeholder-password").await;
    app.execute(
        "UPDATE users SET hashed_password = '$2b$12$m1Pq/uMjA90NW2y6a5OfQOX3HxhdNFngefw7VP7KS0GshP3lpGFEe' WHERE username = $1",
        "legacy",
    )
    .await;
    assert_eq!(app.stored_hash("legacy").await, PASSLIB_BCRYPT_HASH);
    assert_eq!(
        app.login("legacy", "wrong-password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.stored_hash("legacy").await,
        PASSLIB_BCRYPT_HASH,
        "no upgrade on failure"
    );

    let token = app.token_for("legacy", "tutorial-password").await;
    let upgraded = app.stored_hash("legacy").await;
    assert!(upgraded.starts_with("$argon2id$"), "upgraded: {upgraded}");
    assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);
    // The new hash works for the same password.
    assert_eq!(
        app.login("legacy", "tutorial-password").await.status(),
        StatusCode::OK
    );

    // A rehash never overwrites a hash that changed while it was computed (a password reset
    // landing during an old-password login): the upgrade names the hash it replaces.
    let user_id = app.user_id("legacy").await;
    let store = app.state.store.as_ref();
    let now = app.clock.now();
    let replaced = store
        .replace_password_hash(user_id, PASSLIB_BCRYPT_HASH, "$argon2id$stale", now)
        .await
        .unwrap();
    assert!(!replaced);
    assert_eq!(app.stored_hash("legacy").await, upgraded);
    let replaced = store
        .replace_password_hash(user_id, &upgraded, PASSLIB_BCRYPT_HASH, now)
        .await
        .unwrap();
    assert!(replaced);
    assert_eq!(app.stored_hash("legacy").await, PASSLIB_BCRYPT_HASH);
}

async fn login_form_errors_are_4xx(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = app
        .client
        .post(app.url("/token"))
        .form(&[("username", "foo")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = app.documented_json("POST", "/token", missing).await;
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!(["body", "password"])
    );

    let as_json = app
        .post_json(
            "/token",
            &serde_json::json!({"username": "foo", "password": "sesame street lamp"}),
        )
        .await;
    // FastAPI's form reader finds no fields in a JSON body: both are missing.
    assert_eq!(as_json.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = app.documented_json("POST", "/token", as_json).await;
    let missing: Vec<_> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["loc"].clone(), e["type"].clone()))
        .collect();
    assert_eq!(
        missing,
        [
            (
                serde_json::json!(["body", "username"]),
                serde_json::json!("missing")
            ),
            (
                serde_json::json!(["body", "password"]),
                serde_json::json!("missing")
            ),
        ]
    );

    let grant = app
        .client
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("username", "foo"),
            ("password", "sesame street lamp"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), StatusCode::BAD_REQUEST);

    let broken_multipart = app
        .client
        .post(app.url("/token"))
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("--xyz\r\nnot a part")
        .send()
        .await
        .unwrap();
    assert!(
        broken_multipart.status().is_client_error(),
        "{}",
        broken_multipart.status()
    );
}

/// What one user has in the database: sessions, refresh tokens, login events.
async fn login_rows(app: &crate::helpers::TestApp, username: &str) -> [String; 3] {
    let count = |sql| app.fetch_text(sql, username);
    [
        count("SELECT CAST(COUNT(*) AS TEXT) FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = $1").await,
        count("SELECT CAST(COUNT(*) AS TEXT) FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
               JOIN users u ON u.id = s.user_id WHERE u.username = $1").await,
        count("SELECT CAST(COUNT(*) AS TEXT) FROM events e JOIN users u ON u.id = e.user_id \
               WHERE u.username = $1 AND e.kind = 'login_success'").await,
    ]
    .map(|n| n.expect("a count"))
}

/// A login's session, its first refresh token and its audit event are one transaction: all
/// of them are written, or none is.
async fn a_login_writes_its_session_refresh_token_and_event_together(backend: Backend) {
    use gatehouse::store::{NewEvent, NewSession, SessionKind};
    let app = spawn_app(backend).await;
    app.signup("alice", "sesame street lamp").await;
    assert_eq!(login_rows(&app, "alice").await, ["0", "0", "0"]);

    let response = app.login("alice", "sesame street lamp").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(login_rows(&app, "alice").await, ["1", "1", "1"]);
    let event = "SELECT e.ip || ' ' || COALESCE(CAST(e.actor_id AS TEXT), 'no actor') || ' ' || \
                 e.detail || ' ' || CASE WHEN e.user_id = s.user_id THEN 'of the session' ELSE 'of another' END \
                 FROM events e, sessions s WHERE e.kind = 'login_success' AND $1 = $1";
    assert_eq!(
        app.fetch_text(event, "").await.as_deref(),
        Some("127.0.0.1 no actor api of the session")
    );
    let token = "SELECT CASE WHEN r.created_at = s.created_at AND r.used_at IS NULL \
                 THEN 'fresh' ELSE 'stale' END \
                 FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE $1 = $1";
    assert_eq!(app.fetch_text(token, "").await.as_deref(), Some("fresh"));

    let now = app.clock.now();
    let user_id = app.user_id("alice").await;
    let password_hash = app
        .fetch_text(
            "SELECT hashed_password FROM users WHERE username = $1",
            "alice",
        )
        .await
        .unwrap();
    let session = |first_refresh_token_hash, actor_id| NewSession {
        kind: SessionKind::Api,
        token_hash: None,
        user_id,
        persistent: true,
        ip: None,
        user_agent: None,
        created_at: now,
        expires_at: now + chrono::Duration::hours(1),
        idle_expires_at: now + chrono::Duration::hours(1),
        first_refresh_token_hash: Some(first_refresh_token_hash),
        event: Some(NewEvent {
            kind: "login_success",
            user_id: Some(user_id),
            actor_id,
            ip: None,
            user_agent: None,
            detail: Some("api".into()),
            created_at: now,
        }),
        checked_password_hash: password_hash.clone(),
    };
    let store = app.state.store.as_ref();
    // A refresh token the database refuses (the hash is taken) takes the session with it, and
    // the event is not written either.
    let taken = app
        .fetch_text("SELECT token_hash FROM refresh_tokens WHERE $1 = $1", "")
        .await
        .unwrap();
    let refused = store.create_session(session(taken, None)).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(login_rows(&app, "alice").await, ["1", "1", "1"]);
    // So does an event the database refuses (its actor does not exist): a row that refers to
    // a missing one is an answer of "not found", not a failure of the service.
    let refused = store
        .create_session(session("0".repeat(64), Some(i64::MAX)))
        .await;
    assert!(
        matches!(refused, Err(gatehouse::store::StoreError::NotFound)),
        "{refused:?}"
    );
    assert_eq!(login_rows(&app, "alice").await, ["1", "1", "1"]);

    // A login that checked a hash the account no longer has (its password changed while the
    // login was hashing) starts nothing: no session, no token, no event.
    let stale = NewSession {
        checked_password_hash: "$argon2id$v=19$m=19456,t=2,p=1$stale$stale".into(),
        ..session("2".repeat(64), None)
    };
    assert!(store.create_session(stale).await.unwrap().is_none());
    assert_eq!(login_rows(&app, "alice").await, ["1", "1", "1"]);
    // Nor does one for an account disabled meanwhile.
    store.set_user_disabled(user_id, true, now).await.unwrap();
    let disabled = store.create_session(session("3".repeat(64), None)).await;
    assert!(disabled.unwrap().is_none());
    store.set_user_disabled(user_id, false, now).await.unwrap();
    assert_eq!(login_rows(&app, "alice").await, ["0", "0", "1"]);

    // A session without a refresh token or an event (a cookie session) is written alone.
    let cookie = NewSession {
        kind: SessionKind::Browser,
        token_hash: Some("1".repeat(64)),
        first_refresh_token_hash: None,
        event: None,
        ..session(String::new(), None)
    };
    let started = store.create_session(cookie).await.unwrap().unwrap();
    assert_eq!(
        (started.user_id, started.kind.as_str()),
        (user_id, "browser")
    );
    assert_eq!(login_rows(&app, "alice").await, ["1", "0", "1"]);
}
