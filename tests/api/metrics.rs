//! `/metrics`: requests by route template and status, logins by outcome, hashing slots.

use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app};

both_backends!(metrics_count_requests_logins_and_slots);

pub async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of one sample, such as `gatehouse_logins_total{channel="api",outcome="success"}`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

async fn metrics_count_requests_logins_and_slots(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    app.signup("bob", "violet harbor nine").await;
    assert_eq!(
        app.login("alice", "wrong password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.execute(
        "UPDATE users SET disabled = TRUE WHERE username = $1",
        "bob",
    )
    .await;
    assert_eq!(
        app.login("bob", "violet harbor nine").await.status(),
        StatusCode::BAD_REQUEST
    );
    for id in ["41", "42"] {
        let missing = app.get_auth(&format!("/notes/{id}"), &token).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
    app.client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    let wrong_method = app.client.put(app.url("/token")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);

    let text = scrape(&app).await;
    for (series, expected) in [
        (
            r#"gatehouse_logins_total{channel="api",outcome="success"}"#,
            1.0,
        ),
        (
            r#"gatehouse_logins_total{channel="api",outcome="bad_credentials"}"#,
            1.0,
        ),
        (
            r#"gatehouse_logins_total{channel="api",outcome="inactive"}"#,
            1.0,
        ),
        (
            r#"gatehouse_http_requests_total{method="GET",route="/notes/{id}",status="404"}"#,
            2.0,
        ),
        (
            r#"gatehouse_http_requests_total{method="POST",route="/users/",status="200"}"#,
            2.0,
        ),
        (
            r#"gatehouse_http_requests_total{method="GET",route="unmatched",status="404"}"#,
            1.0,
        ),
        // A wrong method on a known path keeps the path's route.
        (
            r#"gatehouse_http_requests_total{method="PUT",route="/token",status="405"}"#,
            1.0,
        ),
        (
            r#"gatehouse_http_request_duration_seconds_count{method="POST",route="/token"}"#,
            3.0,
        ),
        ("gatehouse_password_hash_slots_in_use", 0.0),
        ("gatehouse_password_hash_waiting", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(expected), "{series} in\n{text}");
    }
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(sample(&text, "gatehouse_password_hash_slots"), Some(cores));
    assert!(sample(&text, "gatehouse_active_sessions").is_some());
    assert!(
        !text.contains("/notes/41"),
        "raw paths are never labels: {text}"
    );
}
