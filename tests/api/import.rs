//! `gatehouse import --from postgresql://...` through the real binary, from a PostgreSQL
//! database built with the tutorial's schema: users keep their passlib bcrypt hashes (and log
//! in with their old password), notes go to `--notes-owner`, and a second run imports nothing.

use std::process::Output;

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::helpers::{Backend, TestDb, fresh_postgres_database, spawn_app_with};
use crate::process::{assert_success, command};

/// A real passlib hash of "tutorial-password" (as in the token tests).
const PASSLIB_BCRYPT_HASH: &str = "$2b$12$m1Pq/uMjA90NW2y6a5OfQOX3HxhdNFngefw7VP7KS0GshP3lpGFEe";

/// A fresh PostgreSQL database with the tutorial's tables, dropped at the end of the test.
struct TutorialDatabase {
    url: String,
    pool: PgPool,
    _drop: TestDb,
}

/// The tutorial's schema: the Alembic migration names the hash column `password`, the
/// SQLAlchemy table `hashed_password`.
async fn tutorial_database(hash_column: &str) -> TutorialDatabase {
    let (url, database) = fresh_postgres_database("tutorial").await;
    let pool = PgPool::connect(&url).await.unwrap();
    let users = format!(
        "CREATE TABLE users (id SERIAL PRIMARY KEY, username VARCHAR UNIQUE, {hash_column} VARCHAR)"
    );
    sqlx::query(sqlx::AssertSqlSafe(users))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE notes (id SERIAL PRIMARY KEY, text VARCHAR, completed BOOLEAN)")
        .execute(&pool)
        .await
        .unwrap();
    let insert = format!("INSERT INTO users (username, {hash_column}) VALUES ($1, $2)");
    for (username, hash) in [
        ("tutorial", Some(PASSLIB_BCRYPT_HASH)),
        ("Second.User", Some(PASSLIB_BCRYPT_HASH)),
        ("has space", Some(PASSLIB_BCRYPT_HASH)),
        ("plaintext", Some("not-a-hash")),
        ("nohash", None),
        ("existing", Some(PASSLIB_BCRYPT_HASH)),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(username)
            .bind(hash)
            .execute(&pool)
            .await
            .unwrap();
    }
    for (text, completed) in [
        (Some("buy milk"), Some(false)),
        (Some("walk the dog"), Some(true)),
        (Some("   "), None),
        (None, Some(false)),
    ] {
        sqlx::query("INSERT INTO notes (text, completed) VALUES ($1, $2)")
            .bind(text)
            .bind(completed)
            .execute(&pool)
            .await
            .unwrap();
    }
    TutorialDatabase {
        url,
        pool,
        _drop: database,
    }
}

fn import(dir: &std::path::Path, database_url: &str, args: &[&str]) -> Output {
    let output = command(dir)
        .env("DATABASE_URL", database_url)
        .arg("import")
        .args(args)
        .output()
        .unwrap();
    assert_success(&output);
    output
}

fn summary(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn imports_users_and_notes_once(hash_column: &str, target: Backend) {
    let source = tutorial_database(hash_column).await;
    let dir = tempfile::tempdir().unwrap();
    // The target: a fresh Gatehouse database (its own migrations), with one user already there.
    let app = spawn_app_with(target, |_| {}).await;
    let url = app.state.config.database_url.clone();
    let taken = app.signup("EXISTING", "correct horse battery").await;
    assert_eq!(taken.status(), StatusCode::OK);

    let args = ["--from", &source.url, "--notes-owner", "tutorial"];
    let first = import(dir.path(), &url, &args);
    let text = summary(&first);
    assert!(text.contains("Users: 2 imported, 4 skipped"), "{text}");
    assert!(text.contains("1 invalid username"), "{text}");
    assert!(text.contains("2 without a bcrypt password hash"), "{text}");
    assert!(text.contains("1 name already taken"), "{text}");
    assert!(text.contains("Notes: 2 imported, 2 skipped"), "{text}");
    assert!(!text.contains(PASSLIB_BCRYPT_HASH), "no hash printed");

    // The old password logs in, and the hash becomes Argon2id.
    let token = app.token_for("tutorial", "tutorial-password").await;
    assert!(app.stored_hash("tutorial").await.starts_with("$argon2id$"));
    app.token_for("second.user", "tutorial-password").await;
    let notes: serde_json::Value = app.get_auth("/notes/", &token).await.json().await.unwrap();
    let texts: Vec<(&str, bool)> = notes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["text"].as_str().unwrap(),
                n["completed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(texts, [("buy milk", false), ("walk the dog", true)]);

    let second = import(dir.path(), &url, &args);
    let text = summary(&second);
    assert!(text.contains("Users: 0 imported, 6 skipped"), "{text}");
    assert!(text.contains("2 already imported"), "{text}");
    assert!(text.contains("Notes: 0 imported, 4 skipped"), "{text}");
    let notes: serde_json::Value = app.get_auth("/notes/", &token).await.json().await.unwrap();
    assert_eq!(notes.as_array().unwrap().len(), 2, "nothing twice");
    source.pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alembic_schema_imports_into_sqlite_once() {
    if Backend::postgres_available() {
        imports_users_and_notes_once("password", Backend::Sqlite).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_schema_imports_into_postgres_once() {
    if Backend::postgres_available() {
        imports_users_and_notes_once("hashed_password", Backend::Postgres).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_without_an_owner_are_skipped_with_the_reason() {
    if !Backend::postgres_available() {
        return;
    }
    let source = tutorial_database("password").await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let output = import(dir.path(), &url, &["--from", &source.url]);
    let text = summary(&output);
    assert!(text.contains("Notes: 0 imported, 4 skipped"), "{text}");
    assert!(text.contains("without --notes-owner"), "{text}");
    let refused = command(dir.path())
        .env("DATABASE_URL", &url)
        .args(["import", "--from", &source.url, "--notes-owner", "nobody"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no user named \"nobody\""));
    source.pool.close().await;
}
