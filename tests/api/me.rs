use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, SECRET, assert_detail, spawn_app};

both_backends!(
    me_with_and_without_trailing_slash,
    missing_or_foreign_scheme_is_not_authenticated,
    bad_tokens_could_not_be_validated,
    tutorial_minted_token_is_accepted,
    items_are_the_callers_notes,
);

fn mint(claims: Value, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key)).unwrap()
}

fn in_minutes(minutes: i64) -> i64 {
    chrono::Utc::now().timestamp() + minutes * 60
}

async fn me_with_and_without_trailing_slash(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    for path in ["/users/me/", "/users/me"] {
        let response = app.get_auth(path, &token).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{path} answers without a redirect"
        );
        let body = app.documented_json("GET", path, response).await;
        assert_eq!(body["username"], "alice");
        assert!(body.get("hashed_password").is_none());
    }
}

async fn missing_or_foreign_scheme_is_not_authenticated(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    let no_header = app.client.get(app.url("/users/me/")).send().await.unwrap();
    let headers = assert_detail(no_header, StatusCode::UNAUTHORIZED, "Not authenticated").await;
    assert_eq!(headers["www-authenticate"], "Bearer");
    for value in [
        format!("Basic {token}"),
        token.clone(),
        "Bearer".into(),
        "Bearer ".into(),
    ] {
        let response = app
            .client
            .get(app.url("/users/me/"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_detail(response, StatusCode::UNAUTHORIZED, "Not authenticated").await;
    }
}

async fn bad_tokens_could_not_be_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let good = app.signup_and_login("alice").await;
    app.signup_and_login("ghost").await;
    let ghost = mint(json!({"sub": "ghost", "exp": in_minutes(5)}), SECRET);
    app.execute("DELETE FROM users WHERE username = $1", "ghost")
        .await;

    let forged = mint(
        json!({"sub": "alice", "exp": in_minutes(5)}),
        b"another-secret-another-secret-xx",
    );
    let expired = mint(json!({"sub": "alice", "exp": in_minutes(-5)}), SECRET);
    let subless = mint(json!({"exp": in_minutes(5)}), SECRET);
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(json!({"sub": "alice", "exp": in_minutes(5)}).to_string())
    );
    let mut tampered = good.clone();
    tampered.insert(good.len() - 2, 'x');
    for (label, token) in [
        ("malformed", "not-a-jwt".to_string()),
        ("forged", forged),
        ("expired", expired),
        ("alg none", alg_none),
        ("no sub", subless),
        ("deleted user", ghost),
        ("tampered", tampered),
    ] {
        let response = app.get_me(&token).await;
        let headers = assert_detail(
            response,
            StatusCode::UNAUTHORIZED,
            "Could not validate credentials",
        )
        .await;
        assert_eq!(headers["www-authenticate"], "Bearer", "{label}");
    }
}

async fn tutorial_minted_token_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup_and_login("foo").await;
    // What python-jose's jwt.encode({"sub": ..., "exp": ...}, SECRET_KEY, "HS256") produces.
    let token = mint(json!({"sub": "foo", "exp": in_minutes(30)}), SECRET);
    let response = app.get_me(&token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = app.documented_json("GET", "/users/me/", response).await;
    assert_eq!(body["username"], "foo");
}

async fn items_are_the_callers_notes(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.signup_and_login("alice").await;
    let bob = app.signup_and_login("bob").await;
    let created = app
        .post_auth(
            "/notes/",
            &alice,
            &json!({"text": "buy milk", "completed": false}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::OK);
    let items: Value = app
        .get_auth("/users/me/items/", &alice)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["owner"], "alice");
    assert_eq!(items[0]["text"], "buy milk");
    let bobs: Value = app
        .get_auth("/users/me/items/", &bob)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs, json!([]));
}
