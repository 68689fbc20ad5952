//! Ed25519 signing keys: tokens checked by an independent JWT library against
//! `/.well-known/jwks.json`, rotation across a restart, unknown keys, `iss`/`aud`, and
//! `gatehouse keys generate`.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse::auth::keys::{PrivateKey, write_new_key};
use gatehouse::config::Config;
use gatehouse::server::Server;
use jsonwebtoken::{EncodingKey, Header};
use jwt_compact::alg::Ed25519;
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{AlgorithmExt, TimeOptions, UntrustedToken};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, SECRET, TestApp, TestDb, assert_detail, spawn_app, spawn_app_with, test_config,
};
use crate::process::{assert_success, command as gatehouse};

both_backends!(
    eddsa_tokens_verify_against_the_published_keys,
    hs256_only_publishes_an_empty_set,
    rotation_keeps_tokens_signed_with_the_old_key,
    hs256_is_refused_when_turned_off,
    issuer_and_audience_are_written_and_checked,
);

/// What the independent library reads from Gatehouse's tokens.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    sid: i64,
    iss: Option<String>,
    aud: Option<String>,
}

fn new_key(dir: &Path, name: &str) -> (PathBuf, PrivateKey) {
    let path = dir.join(name);
    let key = write_new_key(&path).unwrap();
    (path, key)
}

fn kid_of(token: &str) -> Option<String> {
    UntrustedToken::new(token).unwrap().header().key_id.clone()
}

async fn jwks(app: &TestApp, base: &str) -> Value {
    let response = app
        .client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Checks `token` the way another service would: with jwt-compact and the JWK whose `kid`
/// the token names, fetched from the JWK Set.
fn verify_independently(jwks: &Value, token: &str) -> Claims {
    let untrusted = UntrustedToken::new(token).unwrap();
    assert_eq!(untrusted.algorithm(), "EdDSA");
    let kid = untrusted.header().key_id.clone().expect("a kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|jwk| jwk["kid"] == kid.as_str())
        .expect("the kid is published");
    let parsed: JsonWebKey<'_> = serde_json::from_value(jwk.clone()).unwrap();
    assert_eq!(
        URL_SAFE_NO_PAD.encode(parsed.thumbprint::<sha2::Sha256>()),
        kid,
        "the kid is the RFC 7638 thumbprint"
    );
    let key = ed25519_dalek::VerifyingKey::try_from(&parsed).unwrap();
    let token = Ed25519
        .validator::<Claims>(&key)
        .validate(&untrusted)
        .unwrap();
    token
        .claims()
        .validate_expiration(&TimeOptions::new(
            chrono::Duration::zero(),
            chrono::Utc::now,
        ))
        .unwrap();
    token.into_parts().1.custom
}

/// The app's database URL, to start another instance on the same data.
fn database_url(app: &TestApp) -> String {
    match &app.db {
        TestDb::Sqlite(pool) => format!(
            "sqlite://{}?mode=rwc",
            pool.connect_options().get_filename().display()
        ),
        TestDb::Postgres {
            admin_url, name, ..
        } => {
            let mut url = url::Url::parse(admin_url).unwrap();
            url.set_path(name);
            url.to_string()
        }
    }
}

/// Starts another instance on `app`'s database with a changed configuration, as a restart
/// would, and returns its base URL.
async fn restart_with(app: &TestApp, data_dir: &Path, adjust: impl FnOnce(&mut Config)) -> String {
    let mut config = test_config(database_url(app), data_dir);
    adjust(&mut config);
    let server = Server::build(config).await.expect("the app starts");
    let base = format!("http://{}", server.local_addr());
    tokio::spawn(server.run(std::future::pending()));
    base
}

async fn me_at(app: &TestApp, base: &str, token: &str) -> reqwest::Response {
    app.client
        .get(format!("{base}/users/me/"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn hs256(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn in_minutes(minutes: i64) -> i64 {
    chrono::Utc::now().timestamp() + minutes * 60
}

async fn assert_refused(response: reqwest::Response, label: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}");
    assert_detail(
        response,
        StatusCode::UNAUTHORIZED,
        "Could not validate credentials",
    )
    .await;
}

async fn eddsa_tokens_verify_against_the_published_keys(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = new_key(dir.path(), "signing.pem");
    let app = spawn_app_with(backend, |c| c.jwt.signing_key_file = Some(path)).await;
    let token = app.signup_and_login("alice").await;
    assert_eq!(kid_of(&token).as_deref(), Some(key.public().kid()));

    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let set = app
        .documented_json("GET", "/.well-known/jwks.json", response)
        .await;
    assert_eq!(
        set,
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(key.public().as_bytes()),
            "kid": key.public().kid(),
            "use": "sig",
            "alg": "EdDSA",
        }]})
    );
    let claims = verify_independently(&set, &token);
    assert_eq!(claims.sub, "alice");
    assert!(claims.sid > 0);
    assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);

    // The tutorial's HS256 tokens stay accepted by default.
    let tutorial = hs256(json!({"sub": "alice", "exp": in_minutes(5)}));
    assert_eq!(app.get_me(&tutorial).await.status(), StatusCode::OK);
}

async fn hs256_only_publishes_an_empty_set(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let set = app
        .documented_json("GET", "/.well-known/jwks.json", response)
        .await;
    assert_eq!(set, json!({"keys": []}));
    let token = app.signup_and_login("alice").await;
    let header = UntrustedToken::new(&token).unwrap();
    assert_eq!(header.algorithm(), "HS256");
    assert_eq!(header.header().key_id, None);
}

async fn rotation_keeps_tokens_signed_with_the_old_key(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (old_path, old) = new_key(dir.path(), "old.pem");
    let (new_path, new) = new_key(dir.path(), "new.pem");
    let app = spawn_app_with(backend, |c| c.jwt.signing_key_file = Some(old_path.clone())).await;
    let old_token = app.signup_and_login("alice").await;

    // Restarted with the new key signing and the old one kept for verification.
    let rotated = restart_with(&app, dir.path(), |c| {
        c.jwt.signing_key_file = Some(new_path.clone());
        c.jwt.verification_key_files = vec![old_path.clone()];
    })
    .await;
    assert_eq!(
        me_at(&app, &rotated, &old_token).await.status(),
        StatusCode::OK
    );
    let set = jwks(&app, &rotated).await;
    let kids: Vec<&str> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new.public().kid(), old.public().kid()]);
    verify_independently(&set, &old_token);
    let response = app
        .client
        .post(format!("{rotated}/token"))
        .form(&[("username", "alice"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let new_token = body["access_token"].as_str().unwrap();
    assert_eq!(kid_of(new_token).as_deref(), Some(new.public().kid()));
    verify_independently(&set, new_token);
    assert_eq!(
        me_at(&app, &rotated, new_token).await.status(),
        StatusCode::OK
    );

    // Once the old key is dropped, its tokens name an unknown kid.
    let retired = restart_with(&app, dir.path(), |c| {
        c.jwt.signing_key_file = Some(new_path.clone())
    })
    .await;
    assert_refused(me_at(&app, &retired, &old_token).await, "retired key").await;
    assert_eq!(
        me_at(&app, &retired, new_token).await.status(),
        StatusCode::OK
    );

    // A key the service never knew, even with a well-formed signature.
    let stranger = PrivateKey::generate();
    let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(stranger.public().kid().to_string());
    let claims = json!({"sub": "alice", "exp": in_minutes(5)});
    let unknown = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_der(&stranger.to_pkcs8_der().unwrap()),
    )
    .unwrap();
    assert_refused(app.get_me(&unknown).await, "unknown kid").await;
    // The same, claiming a known kid: the signature does not match.
    header.kid = Some(old.public().kid().to_string());
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_der(&stranger.to_pkcs8_der().unwrap()),
    )
    .unwrap();
    assert_refused(app.get_me(&forged).await, "forged with a known kid").await;
}

async fn hs256_is_refused_when_turned_off(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = new_key(dir.path(), "signing.pem");
    let app = spawn_app_with(backend, |c| {
        c.jwt.signing_key_file = Some(path);
        c.jwt.accept_hs256 = false;
    })
    .await;
    let token = app.signup_and_login("alice").await;
    assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);
    let tutorial = hs256(json!({"sub": "alice", "exp": in_minutes(5)}));
    assert_refused(app.get_me(&tutorial).await, "HS256 turned off").await;
    // Algorithm confusion: HMAC keyed with the published public key, naming its kid.
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.public().kid().to_string());
    for secret in [
        key.public().as_bytes().to_vec(),
        URL_SAFE_NO_PAD.encode(key.public().as_bytes()).into_bytes(),
    ] {
        let confused = jsonwebtoken::encode(
            &header,
            &json!({"sub": "alice", "exp": in_minutes(5)}),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_refused(app.get_me(&confused).await, "HS256 with a public key").await;
    }
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": key.public().kid()}).to_string()),
        URL_SAFE_NO_PAD.encode(json!({"sub": "alice", "exp": in_minutes(5)}).to_string())
    );
    assert_refused(app.get_me(&alg_none).await, "alg none").await;
}

async fn issuer_and_audience_are_written_and_checked(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_key(dir.path(), "signing.pem");
    let app = spawn_app_with(backend, |c| {
        c.jwt.signing_key_file = Some(path.clone());
        c.jwt.issuer = Some("https://auth.example".into());
        c.jwt.audience = Some("notes-api".into());
    })
    .await;
    let token = app.signup_and_login("alice").await;
    let claims = verify_independently(&jwks(&app, &app.base).await, &token);
    assert_eq!(claims.iss.as_deref(), Some("https://auth.example"));
    assert_eq!(claims.aud.as_deref(), Some("notes-api"));
    assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);

    // Another service expecting another audience or issuer, on the same keys and data.
    let billing = restart_with(&app, dir.path(), |c| {
        c.jwt.signing_key_file = Some(path.clone());
        c.jwt.issuer = Some("https://auth.example".into());
        c.jwt.audience = Some("billing".into());
    })
    .await;
    assert_refused(me_at(&app, &billing, &token).await, "wrong aud").await;
    let elsewhere = restart_with(&app, dir.path(), |c| {
        c.jwt.signing_key_file = Some(path.clone());
        c.jwt.issuer = Some("https://other.example".into());
        c.jwt.audience = Some("notes-api".into());
    })
    .await;
    assert_refused(me_at(&app, &elsewhere, &token).await, "wrong iss").await;

    // HS256 tokens must carry them too.
    for (label, claims) in [
        ("tutorial", json!({"sub": "alice", "exp": in_minutes(5)})),
        (
            "no aud",
            json!({"sub": "alice", "exp": in_minutes(5), "iss": "https://auth.example"}),
        ),
        (
            "no iss",
            json!({"sub": "alice", "exp": in_minutes(5), "aud": "notes-api"}),
        ),
    ] {
        assert_refused(app.get_me(&hs256(claims)).await, label).await;
    }
    let complete = json!({"sub": "alice", "exp": in_minutes(5), "iss": "https://auth.example", "aud": "notes-api"});
    assert_eq!(app.get_me(&hs256(complete)).await.status(), StatusCode::OK);
}

#[test]
fn keys_generate_writes_a_private_key_and_prints_its_kid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.pem");
    let output = gatehouse(dir.path())
        .args(["keys", "generate", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert_success(&output);
    let kid = String::from_utf8(output.stdout).unwrap();
    let written = gatehouse::auth::keys::read_signing_key(&path).unwrap();
    assert_eq!(kid.trim(), written.public().kid());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !dir.path().join("data").exists(),
        "needs no configuration or database"
    );

    let again = gatehouse(dir.path())
        .args(["keys", "generate", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success(), "never overwrites a key");
    assert_eq!(
        gatehouse::auth::keys::read_signing_key(&path)
            .unwrap()
            .public(),
        written.public()
    );
}

#[test]
fn turning_hs256_off_needs_a_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = gatehouse(dir.path())
        .env("JWT_ACCEPT_HS256", "false")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JWT_SIGNING_KEY_FILE"), "{stderr}");
}
