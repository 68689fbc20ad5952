//! Password policy, security headers and the audit trail, as users and browsers see them.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::abuse::submit_form;
use crate::both_backends;
use crate::helpers::{Backend, spawn_app, spawn_app_with};

both_backends!(
    common_and_context_passwords_are_refused_with_the_reason,
    pages_refuse_weak_passwords_and_show_the_rules,
    security_headers_on_pages_and_api,
    every_action_is_recorded_and_shown_to_its_user,
);

const PASSWORD: &str = "correct horse battery";

async fn first_error(response: reqwest::Response) -> (StatusCode, Value, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    let first = &body["detail"][0];
    (
        status,
        first["loc"].clone(),
        first["msg"].as_str().unwrap_or_default().to_string(),
    )
}

async fn common_and_context_passwords_are_refused_with_the_reason(backend: Backend) {
    let app = spawn_app(backend).await;
    for common in ["password", "password1", "Password123", "qwertyuiop"] {
        let (status, loc, msg) = first_error(app.signup("alice", common).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{common}");
        assert_eq!(loc, json!(["body", "password"]));
        assert!(msg.contains("too common"), "{common}: {msg}");
    }
    let (_, _, msg) = first_error(app.signup("alice", "Alice in lanternland").await).await;
    assert_eq!(msg, "Password must not contain your username");
    let with_email =
        json!({"username": "alice", "password": "wonder lantern 9", "email": "wonder@example.com"});
    let (_, _, msg) = first_error(app.post_json("/users/", &with_email).await).await;
    assert_eq!(msg, "Password must not contain your email address");

    // The same rules on a change.
    let token = app.signup_and_login("alice").await;
    let change = |new: &'static str| {
        app.client
            .post(app.url("/users/me/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": PASSWORD, "new_password": new}))
            .send()
    };
    let (status, loc, msg) = first_error(change("iloveyou1").await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(loc, json!(["body", "new_password"]));
    assert!(msg.contains("too common"));
    let (_, _, msg) = first_error(change("my name is alice!").await.unwrap()).await;
    assert_eq!(msg, "Password must not contain your username");
    assert_eq!(
        change("a different long phrase").await.unwrap().status(),
        StatusCode::OK
    );

    // The minimum length is configurable.
    let strict = spawn_app_with(backend, |c| c.abuse.password_policy.min_chars = 12).await;
    let (_, _, msg) = first_error(strict.signup("alice", "lantern-77x").await).await;
    assert_eq!(msg, "Password must be at least 12 characters long");
    assert_eq!(
        strict.signup("alice", "lantern-77xy").await.status(),
        StatusCode::OK
    );
}

async fn pages_refuse_weak_passwords_and_show_the_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let signup = app.client.get(app.url("/signup")).send().await.unwrap();
    let html = signup.text().await.unwrap();
    assert!(html.contains("Not a commonly used password"));
    assert!(html.contains("<script src=\"/static/password-hint.js\" defer></script>"));
    let refused = submit_form(
        &app,
        "/signup",
        "/signup",
        &[("username", "alice"), ("password", "password123")],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("This password is too common")
    );

    let script = app
        .client
        .get(app.url("/static/password-hint.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    let fields = [("username", "alice"), ("password", PASSWORD)];
    let signed_up = submit_form(&app, "/signup", "/signup", &fields).await;
    assert_eq!(signed_up.status(), StatusCode::SEE_OTHER);
    let changed = submit_form(
        &app,
        "/account",
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "alice-phrase-2024"),
        ],
    )
    .await;
    assert_eq!(changed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = changed.text().await.unwrap();
    assert!(html.contains("Password must not contain your username"));
    assert!(html.contains("Not a commonly used password"));
}

async fn security_headers_on_pages_and_api(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    // Pages may run their own scripts; JSON and other answers may load nothing at all.
    let pages = ["/login", "/signup"];
    let others = ["/healthz", "/nowhere", "/openapi.json"];
    for path in pages.into_iter().chain(others) {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        if pages.contains(&path) {
            assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        } else {
            assert!(csp.starts_with("default-src 'none';"), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(!h.contains_key("strict-transport-security"), "plain http");
    }
    let me = app.get_me(&token).await;
    assert_eq!(me.headers()["cache-control"], "no-store");
    assert_eq!(
        me.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(me.headers()["x-content-type-options"], "nosniff");
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.headers()["cache-control"], "no-store");
    let css = app
        .client
        .get(app.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");

    // Swagger UI: its own policy, still no inline script (its pages load scripts from files).
    let docs = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"));
    let html = docs.text().await.unwrap();
    for script in html.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap();
        assert!(tag.contains("src="), "inline script in /docs: {tag}");
    }

    let https = spawn_app_with(backend, |config| {
        config.public_url = url::Url::parse("https://auth.example.com/").unwrap();
    })
    .await;
    let response = https
        .client
        .get(https.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
}

async fn kinds(app: &crate::helpers::TestApp, token: &str) -> Vec<String> {
    let response = app.get_auth("/users/me/events", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let events: Vec<Value> = response.json().await.unwrap();
    for event in &events {
        let shown = event.to_string();
        assert!(
            !shown.contains(PASSWORD) && !shown.contains("wrong guess"),
            "{shown}"
        );
    }
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

async fn every_action_is_recorded_and_shown_to_its_user(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.signup("alice", PASSWORD).await.status(), StatusCode::OK);
    app.login("alice", "wrong guess").await;
    let token = app.token_for("alice", PASSWORD).await;
    let spare = app.token_for("alice", PASSWORD).await;
    let changed = app
        .post_auth(
            "/users/me/password",
            &token,
            &json!({"current_password": PASSWORD, "new_password": "a different long phrase"}),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(app.get_me(&spare).await.status(), StatusCode::UNAUTHORIZED);
    let ended = app
        .client
        .delete(app.url("/users/me/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::OK);
    let newest = kinds(&app, &token).await;
    assert_eq!(
        newest,
        [
            "session_ended",
            "password_changed",
            "login_success",
            "login_success",
            "login_failure",
            "signup"
        ]
    );
    let logout = app
        .client
        .post(app.url("/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    // The pages: a failed and a successful sign-in, the account page, a log-out.
    let bad = [("username", "alice"), ("password", "wrong guess")];
    assert_eq!(
        submit_form(&app, "/login", "/login", &bad).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let good = [
        ("username", "alice"),
        ("password", "a different long phrase"),
    ];
    assert_eq!(
        submit_form(&app, "/login", "/login", &good).await.status(),
        StatusCode::SEE_OTHER
    );
    let account = app.client.get(app.url("/account")).send().await.unwrap();
    let html = account.text().await.unwrap();
    assert!(html.contains("Recent activity"));
    for shown in [
        "Signed in",
        "Failed sign-in attempt",
        "Password changed",
        "Signed out",
    ] {
        assert!(html.contains(shown), "{shown}");
    }
    let out = submit_form(&app, "/account", "/account/logout", &[]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);

    let page_token = app.token_for("alice", "a different long phrase").await;
    let all = kinds(&app, &page_token).await;
    assert_eq!(
        &all[..5],
        [
            "login_success",
            "logout",
            "login_success",
            "login_failure",
            "logout"
        ]
    );
    let details = app
        .fetch_text(
            "SELECT detail FROM events WHERE kind = $1 ORDER BY id DESC LIMIT 1",
            "logout",
        )
        .await;
    assert_eq!(details.as_deref(), Some("page"));
    let ip = app
        .fetch_text("SELECT ip FROM events WHERE kind = $1 LIMIT 1", "signup")
        .await;
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
}
