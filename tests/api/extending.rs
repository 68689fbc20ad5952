//! Routes of one's own beside Gatehouse's (`Server::with_routes`), behind the same layers and
//! with the same extractors, and what a handler that panics answers, to an API client and to a
//! browser.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use gatehouse::http::{AdminUser, ApiPath, AuthUser};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, assert_detail, assert_page, spawn_app_with_routes};
use crate::metrics::{sample, scrape};

both_backends!(own_routes_get_the_layers_and_a_panic_answers_500);

async fn own_routes_get_the_layers_and_a_panic_answers_500(backend: Backend) {
    let routes = Router::new()
        .route(
            "/hello",
            get(|AuthUser(user): AuthUser| async move { format!("hello {}", user.username) }),
        )
        .route(
            "/stats/{day}",
            get(
                |AdminUser(admin): AdminUser, ApiPath(day): ApiPath<u32>| async move {
                    format!("day {day} for {}", admin.username)
                },
            ),
        )
        .route(
            "/whereami",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route("/bug", get(a_bug));
    let app = spawn_app_with_routes(backend, routes).await;
    let token = app.signup_and_login("alice").await;
    let base = app.base.clone();
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}"));

    // An own route takes Gatehouse's extractors: signed in, or a 401.
    let hello = get("/hello").bearer_auth(&token).send().await.unwrap();
    assert_eq!(hello.status(), StatusCode::OK);
    assert!(hello.headers().contains_key("x-request-id"));
    assert_eq!(hello.text().await.unwrap(), "hello alice");
    let anonymous = get("/hello").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Superusers only, and a path parameter refused with the API's 422.
    let (_, admin) = app.superuser("root").await;
    let stats = get("/stats/7").bearer_auth(&admin).send().await.unwrap();
    assert_eq!(stats.status(), StatusCode::OK);
    assert_eq!(stats.text().await.unwrap(), "day 7 for root");
    let not_admin = get("/stats/7").bearer_auth(&token).send().await.unwrap();
    assert_detail(not_admin, StatusCode::FORBIDDEN, "Not enough permissions").await;
    let bad_day = get("/stats/seven")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_day.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = bad_day.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["path"]), "{body}");

    // The server knows the client's address, which rate limits and the audit trail need.
    let whereami = get("/whereami").send().await.unwrap();
    assert_eq!(whereami.text().await.unwrap(), "127.0.0.1");

    // A panic answers 500 in the API's shape, through the same layers, without its message.
    let bug = get("/bug").send().await.unwrap();
    assert_eq!(bug.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(bug.headers().contains_key("x-request-id"));
    assert_eq!(bug.headers()["x-content-type-options"], "nosniff");
    let body: Value = bug.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Internal server error"}));
    // A browser gets the error page instead, as for a 404, still without the message.
    let page = get("/bug")
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    let html = assert_page(page, StatusCode::INTERNAL_SERVER_ERROR).await;
    assert!(html.contains("Something went wrong"), "{html}");
    assert!(html.contains("An unexpected error occurred."), "{html}");
    assert!(!html.contains("secret"), "{html}");

    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"gatehouse_http_requests_total{method="GET",route="/bug",status="500"}"#
        ),
        Some(2.0),
        "{text}"
    );

    // The service goes on, Gatehouse's own routes beside the new ones.
    let me = get("/users/me/").bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["username"], "alice");
}

async fn a_bug() -> &'static str {
    panic!("a bug whose message names a secret")
}
