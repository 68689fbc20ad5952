//! Cross-cutting parts of the HTTP contract: body limits, content types, CORS, unknown routes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, assert_detail, assert_page, spawn_app};

both_backends!(
    malformed_bodies_are_4xx_never_500,
    a_nul_character_gets_the_same_answer_on_both_backends,
    addresses_axum_cannot_read_are_422_with_a_message,
    oversized_bodies_are_413,
    cors_allows_configured_origins_only,
    unknown_routes_and_methods_have_json_errors,
    a_path_off_by_its_trailing_slash_is_sent_on,
    request_ids_are_generated_and_echoed,
    health_and_readiness,
);

async fn malformed_bodies_are_4xx_never_500(backend: Backend) {
    let app = spawn_app(backend).await;
    let send = |content_type: &'static str, body: &'static [u8]| {
        app.client
            .post(app.url("/users/"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let json_invalid = send("application/json", b"{\"username\": ").await.unwrap();
    assert_eq!(json_invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = json_invalid.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "json_invalid");

    for (content_type, raw) in [
        ("application/json", &b"[1, 2]"[..]),
        ("application/json", b"\xff\xfe"),
        ("application/json", b"null"),
        ("text/plain", b"hello"),
        (
            "application/x-www-form-urlencoded",
            b"username=foo&password=password",
        ),
    ] {
        let status = send(content_type, raw).await.unwrap().status();
        assert!(
            status.is_client_error(),
            "{content_type} {raw:?} -> {status}"
        );
    }
    // As FastAPI answers: another media type is a body no model takes, an empty body is a
    // missing one, and a body without a Content-Type is read as JSON, every missing field
    // listed at once.
    let detail = async |response: reqwest::Response| {
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        response.json::<Value>().await.unwrap()["detail"].clone()
    };
    let form = send("application/x-www-form-urlencoded", b"username=foo").await;
    assert_eq!(
        detail(form.unwrap()).await,
        json!([{"loc": ["body"], "msg": "Input should be a valid dictionary or object to extract fields from", "type": "model_attributes_type"}])
    );
    let empty = detail(send("application/json", b"").await.unwrap()).await;
    assert_eq!(
        empty,
        json!([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
    );
    let no_type = app.client.post(app.url("/users/")).body("{}").send().await;
    assert_eq!(
        detail(no_type.unwrap()).await,
        json!([
            {"loc": ["body", "username"], "msg": "Field required", "type": "missing"},
            {"loc": ["body", "password"], "msg": "Field required", "type": "missing"},
        ])
    );
    let body = r#"{"username": "untyped", "password": "long enough phrase"}"#;
    let untyped = app.client.post(app.url("/users/")).body(body).send().await;
    assert_eq!(untyped.unwrap().status(), StatusCode::OK);
    // Unless a browser says it comes from another site's page, which may send such a body
    // without asking: not read, so no sign-up.
    let body = r#"{"username": "cross", "password": "long enough phrase"}"#;
    let cross = app.client.post(app.url("/users/")).body(body);
    let cross = cross.header("sec-fetch-site", "cross-site").send().await;
    assert_eq!(
        detail(cross.unwrap()).await[0]["type"],
        "model_attributes_type"
    );
    let signed_up = "SELECT COUNT(*) FROM users WHERE username = $1";
    assert_eq!(app.count(signed_up, "cross").await, 0);
}

/// NUL, which PostgreSQL cannot store in text, wherever it comes in: the answer a name that
/// no one has gets, or a 422 that names the field, the same on both backends, never a 500.
async fn a_nul_character_gets_the_same_answer_on_both_backends(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.superuser("alice").await;
    let send = |method: reqwest::Method, path: &str, body: Value| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    assert_detail(
        app.login("al\0ice", "correct horse battery").await,
        StatusCode::UNAUTHORIZED,
        "Incorrect username or password",
    )
    .await;
    let reset = app
        .post_json("/password-reset", &json!({"username": "al\0ice"}))
        .await;
    assert_eq!(reset.status(), StatusCode::ACCEPTED);
    let found = app.get_auth("/admin/users?q=al%00", &token).await;
    assert_eq!(found.status(), StatusCode::OK);
    let found: Value = found.json().await.unwrap();
    assert_eq!(found["total"], 0, "{found}");

    let refused = [
        (
            send(reqwest::Method::POST, "/notes/", json!({"text": "milk\0"})).await,
            "text",
            "Note text must not contain the NUL character",
        ),
        (
            send(reqwest::Method::PATCH, "/users/me", json!({"full_name": "Al\0ice"})).await,
            "full_name",
            "Full name must not contain control characters",
        ),
        (
            send(
                reqwest::Method::POST,
                "/users/",
                json!({"username": "bob", "password": "correct horse battery", "full_name": "B\0b"}),
            )
            .await,
            "full_name",
            "Full name must not contain control characters",
        ),
    ];
    for (answer, field, message) in refused {
        let answer = answer.unwrap_or_else(|answer| panic!("{answer}"));
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"][1], field, "{body}");
        assert_eq!(body["detail"][0]["msg"], message, "{body}");
    }
    let me: Value = app.get_me(&token).await.json().await.unwrap();
    assert_eq!(me["full_name"], Value::Null);
    let notes: Value = app.get_auth("/notes/", &token).await.json().await.unwrap();
    assert_eq!(notes, json!([]));

    // Below those checks, PostgreSQL's refusal is a 400 with a message, not a 500.
    let id = app.user_id("alice").await;
    let stored = app
        .state
        .store
        .set_full_name(id, Some("Al\0ice"), chrono::Utc::now())
        .await;
    match backend {
        Backend::Sqlite => assert!(stored.is_ok(), "{stored:?}"),
        Backend::Postgres => {
            let error = gatehouse::error::Error::from(stored.unwrap_err());
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            assert_eq!(error.detail(), "Text must not contain the NUL character");
        }
    }
}

/// A path segment that is not UTF-8 once decoded, or a query that does not fit a page's
/// fields: a 422 in the API's shape, or an error page, never axum's plain-text 400. (The
/// API's queries are read as text pairs, which take any query.)
async fn addresses_axum_cannot_read_are_422_with_a_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, token) = app.superuser("alice").await;
    let api = [
        (reqwest::Method::GET, "/notes/%FF"),
        (reqwest::Method::DELETE, "/users/me/sessions/%FF"),
        (reqwest::Method::GET, "/admin/users/%FF"),
    ];
    for (method, path) in api {
        let answer = app
            .client
            .request(method, app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["detail"][0]["loc"], json!(["path"]), "{path}: {body}");
        assert!(
            body["detail"][0]["msg"].as_str().unwrap().contains("UTF-8"),
            "{path}: {body}"
        );
    }

    let page = app
        .client
        .get(app.url("/login?next=/a&next=/b"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let html = assert_page(page, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(html.contains("duplicate field"), "{html}");
}

async fn oversized_bodies_are_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let padding = "x".repeat(70 * 1024);
    let response = app
        .post_json(
            "/users/",
            &json!({"username": "big", "password": "long enough phrase", "full_name": padding}),
        )
        .await;
    assert_detail(
        response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request body too large",
    )
    .await;
    let form = app
        .client
        .post(app.url("/token"))
        .form(&[("username", "big"), ("password", padding.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn cors_allows_configured_origins_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/users/me/"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    // Never with credentials: a script on an allowed origin must not read the pages, which
    // the session cookie signs in to, as the browser's user.
    let credentials = allowed.headers().get("access-control-allow-credentials");
    assert!(credentials.is_none(), "{credentials:?}");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

async fn unknown_routes_and_methods_have_json_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_detail(missing, StatusCode::NOT_FOUND, "Not Found").await;
    let wrong_method = app.client.delete(app.url("/token")).send().await.unwrap();
    assert_detail(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
    )
    .await;
}

/// As FastAPI answers: an API path with its trailing slash added or dropped is a 307 to the
/// API's own, which keeps the method and the body, so a client that follows it is served.
/// `/notes` is the notes page, but a client with a bearer token asking it means the API.
async fn a_path_off_by_its_trailing_slash_is_sent_on(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("alice", "correct horse battery").await;
    // A client that follows redirects, as fetch and curl -L do.
    let follows = reqwest::Client::new();
    let login = [("username", "alice"), ("password", "correct horse battery")];
    let sent_on = app
        .client
        .post(app.url("/token/"))
        .form(&login)
        .send()
        .await;
    let sent_on = sent_on.unwrap();
    assert_eq!(sent_on.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(sent_on.headers()["location"], "/token");
    let token = follows.post(app.url("/token/")).form(&login).send().await;
    let body: Value = token.unwrap().json().await.unwrap();
    let token = body["access_token"].as_str().expect("a token").to_string();

    let note = json!({"text": "through /notes", "completed": false});
    let created = follows
        .post(app.url("/notes"))
        .bearer_auth(&token)
        .json(&note);
    let created: Value = created.send().await.unwrap().json().await.unwrap();
    assert_eq!(created["text"], "through /notes");
    let listed = follows
        .get(app.url("/notes?x=1"))
        .bearer_auth(&token)
        .send()
        .await;
    let listed: Value = listed.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let one = format!("/notes/{}/", created["id"]);
    let asked = app
        .client
        .get(app.url(&one))
        .bearer_auth(&token)
        .send()
        .await;
    assert_eq!(
        asked.unwrap().headers()["location"],
        one.trim_end_matches('/')
    );

    // A browser without a token still gets the page's answer, signed out the login page,
    // even behind HTTP Basic, which sends an Authorization header with every page.
    for basic in [false, true] {
        let mut page = app.client.get(app.url("/notes"));
        if basic {
            page = page.basic_auth("staging", Some("preview"));
        }
        let page = page.send().await.unwrap();
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        let location = page.headers()["location"].to_str().unwrap();
        assert!(location.starts_with("/login"), "{location}");
    }
    let missing = app
        .client
        .get(app.url("/no/such/route/"))
        .send()
        .await
        .unwrap();
    assert_detail(missing, StatusCode::NOT_FOUND, "Not Found").await;
}

async fn request_ids_are_generated_and_echoed(backend: Backend) {
    let app = spawn_app(backend).await;
    let generated = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(generated.headers()["x-request-id"].len(), 36, "a UUID");
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc-123");
}

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/healthz", "/readyz"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"status": "ok"}));
    }
}
