//! Logins and sign-ups reach PostgreSQL through connections of their own (the password lane's),
//! which the database server names apart from the service's other connections.

use crate::helpers::{Backend, TestApp, TestDb, spawn_app, spawn_app_with};

/// The names the service's connections to its database go by (`application_name`), each once.
async fn connection_names(app: &TestApp) -> Vec<String> {
    let TestDb::Postgres { pool, .. } = &app.db else {
        unreachable!()
    };
    // The test's own connections give no name.
    sqlx::query_scalar(
        "SELECT DISTINCT application_name FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name <> '' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_sign_ups_have_connections_of_their_own() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(
        connection_names(&app).await,
        ["gatehouse"],
        "before any login, only the shared connections are open"
    );

    let token = app.signup_and_login("alice").await;
    assert_eq!(app.get_me(&token).await.status(), 200);
    assert_eq!(
        connection_names(&app).await,
        ["gatehouse", "gatehouse-login"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_given_in_the_url_is_kept() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |config| {
        config.database_url.push_str("?application_name=shop");
    })
    .await;
    app.signup_and_login("alice").await;
    assert_eq!(connection_names(&app).await, ["shop", "shop-login"]);
}
