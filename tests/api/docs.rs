//! `/openapi.json` and `/docs`: the document covers every JSON route the router serves, and
//! Swagger UI is served from the binary and can log in.

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use gatehouse::server::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{Backend, spawn_app, test_config};

const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The document itself is JSON but not an operation of the API.
const NOT_OPERATIONS: [&str; 1] = ["/openapi.json"];

/// The path templates a router serves, read from its `Debug` output (axum lists its routes
/// there and has no other way to enumerate them).
fn served_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let paths: BTreeSet<String> = debug
        .split("RouteId(")
        .skip(1)
        .filter_map(|chunk| chunk.split_once("): \"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(path, _)| path.to_string()))
        .filter(|path| !path.contains("__private__axum"))
        .collect();
    assert!(
        paths.contains("/token"),
        "axum's Debug output changed; cannot list routes: {debug}"
    );
    paths
}

/// A concrete path for a template: every parameter becomes `1`.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "1"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every (method, path) the router answers with JSON but the document does not list, and every
/// documented operation the router does not serve.
async fn undocumented(router: Router, document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let documented = document["paths"].as_object().unwrap();
    let served = served_paths(&router);
    for path in &served {
        for method in METHODS {
            let request = Request::builder()
                .method(method.clone())
                .uri(concrete(path))
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            if response.status() == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            let is_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            let operation = &document["paths"][path][method.as_str().to_ascii_lowercase()];
            if is_json && !operation.is_object() && !NOT_OPERATIONS.contains(&path.as_str()) {
                problems.push(format!("{method} {path} is served but not documented"));
            }
        }
    }
    for (path, item) in documented {
        for method in item.as_object().unwrap().keys() {
            if !served.contains(path) {
                problems.push(format!("{method} {path} is documented but not served"));
            }
        }
    }
    problems
}

async fn router_and_document() -> (Router, Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let server = Server::build(test_config(url, dir.path())).await.unwrap();
    let router = gatehouse::http::router(server.state().clone());
    let document = serde_json::to_value(gatehouse::http::docs::openapi()).unwrap();
    (router, document, dir)
}

#[tokio::test]
async fn every_json_route_is_documented_and_every_documented_route_served() {
    let (router, document, _dir) = router_and_document().await;
    assert_eq!(undocumented(router, &document).await, Vec::<String>::new());
    for path in [
        "/users/",
        "/token",
        "/users/me/",
        "/notes/{id}",
        "/healthz",
        "/metrics",
    ] {
        assert!(document["paths"][path].is_object(), "{path}");
    }
}

#[tokio::test]
async fn a_route_added_without_documentation_is_caught() {
    let (router, document, _dir) = router_and_document().await;
    let router = router.route(
        "/extra/{id}",
        axum::routing::delete(|| async { axum::Json(json!({"ok": true})) }),
    );
    assert_eq!(
        undocumented(router, &document).await,
        ["DELETE /extra/{id} is served but not documented"]
    );
}

#[tokio::test]
async fn openapi_json_is_the_generated_document() {
    let app = spawn_app(Backend::Sqlite).await;
    let served = app.openapi().await;
    let generated = serde_json::to_value(gatehouse::http::docs::openapi()).unwrap();
    assert_eq!(served, &generated);
    assert_eq!(served["openapi"], "3.1.0");
    let flow = &served["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"];
    assert_eq!(flow["password"]["tokenUrl"], "/token");
    let me = &served["paths"]["/users/me/"]["get"];
    assert_eq!(me["security"], json!([{"OAuth2PasswordBearer": []}]));
    let errors = &served["components"]["schemas"];
    assert_eq!(
        errors["HTTPError"]["required"],
        json!(["detail"]),
        "{{\"detail\": \"...\"}}"
    );
    assert!(errors["ValidationError"]["properties"]["type"].is_object());
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app(Backend::Sqlite).await;
    let get = |path: &'static str| app.client.get(app.url(path)).send();
    let redirect = get("/docs").await.unwrap();
    assert!(redirect.status().is_redirection());
    let page = get("/docs/").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("://"), "no asset from another host: {html}");
    let init = get("/docs/swagger-initializer.js").await.unwrap();
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    let bundle = get("/docs/swagger-ui-bundle.js").await.unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
}

/// What Swagger UI's "Authorize" dialog sends for the password flow.
#[tokio::test]
async fn swagger_ui_authorize_form_gets_a_token() {
    let app = spawn_app(Backend::Sqlite).await;
    app.signup("swagger", "open api phrase 9").await;
    let response = app
        .client
        .post(app.url("/token"))
        .basic_auth("", Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", "swagger"),
            ("password", "open api phrase 9"),
            ("scope", ""),
            ("client_id", "docs"),
            ("client_secret", "ignored"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = app.documented_json("POST", "/token", response).await;
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(app.get_me(token).await.status(), StatusCode::OK);
}
