use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, assert_detail, spawn_app};

both_backends!(
    notes_crud_for_the_owner,
    another_users_note_is_a_404,
    note_input_errors_are_4xx,
);

async fn create(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.post_auth("/notes/", token, &body).await
}

async fn notes_crud_for_the_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    let created = app
        .documented_json(
            "POST",
            "/notes/",
            create(&app, &token, json!({"text": "first", "completed": false})).await,
        )
        .await;
    assert_eq!(created["text"], "first");
    assert_eq!(created["completed"], false);
    let id = created["id"].as_i64().unwrap();
    create(&app, &token, json!({"text": "second"})).await;

    let listed = app
        .documented_json("GET", "/notes/", app.get_auth("/notes/", &token).await)
        .await;
    let texts: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["first", "second"]);

    let patched = app
        .client
        .patch(app.url(&format!("/notes/{id}")))
        .bearer_auth(&token)
        .json(&json!({"completed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    app.documented_json("PATCH", "/notes/{id}", patched).await;
    let one = app
        .documented_json(
            "GET",
            "/notes/{id}",
            app.get_auth(&format!("/notes/{id}"), &token).await,
        )
        .await;
    assert_eq!(one, json!({"id": id, "text": "first", "completed": true}));

    let deleted = app
        .client
        .delete(app.url(&format!("/notes/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_auth(&format!("/notes/{id}"), &token).await.status(),
        StatusCode::NOT_FOUND
    );
    let remaining = app
        .fetch_text("SELECT text FROM notes WHERE text = $1", "first")
        .await;
    assert_eq!(remaining, None, "the row is gone from the database");
}

async fn another_users_note_is_a_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.signup_and_login("alice").await;
    let mallory = app.signup_and_login("mallory").await;
    let note: Value = create(&app, &alice, json!({"text": "private"}))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/notes/{}", note["id"]);

    assert_detail(
        app.get_auth(&path, &mallory).await,
        StatusCode::NOT_FOUND,
        "Not Found",
    )
    .await;
    let patch = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&mallory)
        .json(&json!({"text": "pwned"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::NOT_FOUND);
    let delete = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&mallory)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);
    let listed: Value = app
        .get_auth("/notes/", &mallory)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));

    let still: Value = app.get_auth(&path, &alice).await.json().await.unwrap();
    assert_eq!(still["text"], "private");
    assert_eq!(
        app.client
            .get(app.url("/notes/"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn note_input_errors_are_4xx(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    let blank = create(&app, &token, json!({"text": "   "})).await;
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let wrong_type = create(&app, &token, json!({"text": "ok", "completed": "yes"})).await;
    assert_eq!(wrong_type.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_id = app.get_auth("/notes/abc", &token).await;
    assert_eq!(bad_id.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let huge_id = app.get_auth("/notes/99999999999999999999999", &token).await;
    assert_eq!(huge_id.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let note: Value = create(&app, &token, json!({"text": "ok"}))
        .await
        .json()
        .await
        .unwrap();
    let array = app
        .client
        .patch(app.url(&format!("/notes/{}", note["id"])))
        .bearer_auth(&token)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        array.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a body must be an object"
    );
    let missing = app.get_auth("/notes/424242", &token).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
