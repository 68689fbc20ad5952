//! `gatehouse user ...` through the real binary, against a SQLite database: passwords come
//! from standard input and are never printed; errors are clear and exit with 1.

use std::io::Write;
use std::process::{Output, Stdio};

use reqwest::StatusCode;

use crate::helpers::{Backend, spawn_app_with};
use crate::process::{assert_success, command};

const PASSWORD: &str = "a long enough passphrase";

/// The binary against `database_url`, with cheap hashing, fed `stdin`.
fn gatehouse(dir: &std::path::Path, database_url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = command(dir)
        .env("DATABASE_URL", database_url)
        .env("ARGON2_MEMORY_KIB", "4096")
        .env("ARGON2_ITERATIONS", "1")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains(PASSWORD), "a password was printed: {all}");
    assert!(!all.contains("$argon2"), "a hash was printed: {all}");
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_failure(output: &Output, message: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", stdout(output));
    assert!(
        stderr(output).contains(message),
        "wanted {message:?}: {}",
        stderr(output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_manage_accounts_that_then_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let run = |args: &[&str], stdin: &str| gatehouse(dir.path(), &url, args, stdin);
    let line = format!("{PASSWORD}\n");

    let created = run(
        &[
            "user",
            "create",
            "root",
            "--email",
            "root@example.com",
            "--superuser",
            "--password-stdin",
        ],
        &line,
    );
    assert_success(&created);
    assert!(
        stdout(&created).contains("Created superuser root"),
        "{}",
        stdout(&created)
    );
    assert_success(&run(&["user", "create", "bob", "--password-stdin"], &line));

    assert_failure(
        &run(&["user", "create", "BOB", "--password-stdin"], &line),
        "already exists",
    );
    assert_failure(
        &run(&["user", "create", "carol", "--password-stdin"], "short\n"),
        "at least 8 characters",
    );
    assert_failure(
        &run(&["user", "create", "no spaces", "--password-stdin"], &line),
        "username",
    );
    assert_failure(&run(&["user", "create", "carol"], ""), "--password-stdin");
    assert_failure(
        &run(&["user", "disable", "nobody"], ""),
        "no user named \"nobody\"",
    );
    let usage = run(&["user", "frobnicate", "bob"], "");
    assert_eq!(usage.status.code(), Some(2), "usage errors are clap's 2");

    let list = run(&["user", "list"], "");
    assert_success(&list);
    let listed = stdout(&list);
    assert!(
        listed.contains("root") && listed.contains("superuser"),
        "{listed}"
    );
    assert!(
        listed.contains("root@example.com") && listed.contains("2 user(s)"),
        "{listed}"
    );

    // The service sees what the command line did.
    let app = spawn_app_with(Backend::Sqlite, |config| config.database_url = url.clone()).await;
    let root = app.token_for("root", PASSWORD).await;
    assert_eq!(
        app.get_auth("/admin/users", &root).await.status(),
        StatusCode::OK
    );
    let bob = app.token_for("bob", PASSWORD).await;
    assert_eq!(
        app.get_auth("/admin/users", &bob).await.status(),
        StatusCode::FORBIDDEN
    );

    assert_success(&run(&["user", "promote", "bob"], ""));
    assert_eq!(
        app.get_auth("/admin/users", &bob).await.status(),
        StatusCode::OK
    );
    assert_success(&run(&["user", "demote", "bob"], ""));
    assert_eq!(
        app.get_auth("/admin/users", &bob).await.status(),
        StatusCode::FORBIDDEN
    );

    let disabled = run(&["user", "disable", "bob"], "");
    assert_success(&disabled);
    assert!(
        stdout(&disabled).contains("1 session(s) ended"),
        "{}",
        stdout(&disabled)
    );
    assert_eq!(app.get_me(&bob).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("bob", PASSWORD).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_success(&run(&["user", "enable", "bob"], ""));
    let bob = app.token_for("bob", PASSWORD).await;

    let new_password = "another long passphrase\n";
    assert_success(&run(
        &["user", "set-password", "bob", "--password-stdin"],
        new_password,
    ));
    assert_eq!(
        app.get_me(&bob).await.status(),
        StatusCode::UNAUTHORIZED,
        "sessions ended"
    );
    assert_eq!(
        app.login("bob", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.token_for("bob", new_password.trim()).await;

    assert_success(&run(&["user", "delete", "bob"], ""));
    assert_eq!(
        app.login("bob", new_password.trim()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The app's own test pool points elsewhere: read the CLI's database directly.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let recorded: Option<String> = sqlx::query_scalar(
        "SELECT detail FROM events WHERE kind = 'admin_action' AND actor_id IS NULL AND detail LIKE $1",
    )
    .bind("deleted user bob%")
    .fetch_optional(&pool)
    .await
    .unwrap();
    assert!(recorded.is_some(), "the deletion is in the audit trail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_deletes_ended_sessions_once_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let run = |args: &[&str], stdin: &str| gatehouse(dir.path(), &url, args, stdin);
    assert_success(&run(
        &["user", "create", "ann", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    ));
    let app = spawn_app_with(Backend::Sqlite, |config| config.database_url = url.clone()).await;
    app.token_for("ann", PASSWORD).await;
    let live = app.token_for("ann", PASSWORD).await;
    // The command acts on the real clock: end the first session an hour ago.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE sessions SET expires_at = $1 WHERE id = (SELECT MIN(id) FROM sessions)")
        .bind(chrono::Utc::now() - chrono::Duration::hours(1))
        .execute(&pool)
        .await
        .unwrap();

    let swept = run(&["housekeeping"], "");
    assert_success(&swept);
    assert!(
        stdout(&swept).contains("Deleted 1 ended sessions, 0 expired link tokens"),
        "{}",
        stdout(&swept)
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    assert_eq!(app.get_me(&live).await.status(), StatusCode::OK);
}

/// The commands other than `migrate` set up a new database, but never migrate one that
/// servers of an older version may still be using: they refuse it and name the way on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_migrate_a_new_database_but_refuse_one_an_older_version_made() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let run = |args: &[&str]| gatehouse(dir.path(), &url, args, "");
    assert_success(&run(&["user", "list"]));

    // Played by forgetting the newest migration: as if this binary were one version ahead.
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let applied = async || -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(&db)
    .await
    .unwrap();
    let before = applied().await;
    let refused = run(&["user", "list"]);
    assert_failure(&refused, "run `gatehouse migrate` first");
    assert_eq!(applied().await, before, "the command applied nothing");
}
