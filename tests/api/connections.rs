//! Logins and sign-ups reach PostgreSQL through connections of their own (the password lane's),
//! which the database server names apart from the service's other connections.

use std::sync::Arc;

use crate::helpers::{Backend, TestApp, TestDb, spawn_app, spawn_app_with};

/// The names, each once, of the connections to the app's database whose name starts with
/// `prefix` (`application_name`; the test's own connections have none).
async fn connection_names(app: &TestApp, prefix: &str) -> Vec<String> {
    let TestDb::Postgres { pool, .. } = &app.db else {
        unreachable!()
    };
    sqlx::query_scalar(
        "SELECT DISTINCT application_name FROM pg_stat_activity \
         WHERE datname = current_database() AND starts_with(application_name, $1) ORDER BY 1",
    )
    .bind(prefix)
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
        connection_names(&app, "gatehouse").await,
        ["gatehouse"],
        "before any login, only the shared connections are open"
    );

    let token = app.signup_and_login("alice").await;
    assert_eq!(app.get_me(&token).await.status(), 200);
    assert_eq!(
        connection_names(&app, "gatehouse").await,
        ["gatehouse", "gatehouse-login"]
    );
}

crate::both_backends!(work_on_the_password_lane_uses_the_lanes_store);

async fn work_on_the_password_lane_uses_the_lanes_store(backend: Backend) {
    let app = spawn_app(backend).await;
    let lane_store = app.state.password_lane.store().clone();
    let given = app
        .state
        .clone()
        .on_password_lane(|state| async move { state.store })
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&given, &lane_store));
    // SQLite's connections serve any runtime: there the lane keeps the one store.
    assert_eq!(
        Arc::ptr_eq(&given, &app.state.store),
        backend == Backend::Sqlite
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_given_in_the_url_is_kept() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |config| {
        let mut url = url::Url::parse(&config.database_url).unwrap();
        url.query_pairs_mut()
            .append_pair("application_name", "shop");
        config.database_url = url.into();
    })
    .await;
    app.signup_and_login("alice").await;
    assert_eq!(connection_names(&app, "shop").await, ["shop", "shop-login"]);
}
