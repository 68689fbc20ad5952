//! A database outage is a 503, and the service recovers on its own when the database returns.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::helpers::{
    Backend, TestApp, TestDb, assert_detail, fresh_postgres_database, spawn_app, spawn_app_with,
};
use crate::process::Process;
use crate::relay::Relay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_503_and_recovers() {
    if !Backend::postgres_available() {
        return;
    }
    let (app, token, admin) = signed_in_app_and_admin().await;
    let name = app_database(&app);

    // Refuse new connections to the app's database and cut the open ones.
    set_connections(&admin, name, false).await;
    cut_connections(&admin, name).await;

    // Sessions held in memory are trusted only while the change feed is connected, and the
    // feed's connection was cut too: the service notices within a moment, then answers 503.
    let down = eventually_unavailable(&app, &token).await;
    let headers = assert_detail(down, StatusCode::SERVICE_UNAVAILABLE, "Service unavailable").await;
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        app.signup("bob", "violet harbor nine").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    set_connections(&admin, name, true).await;
    assert!(
        recovers(&app, &token).await,
        "the service reconnects by itself"
    );
    // Logins and sign-ups have connections of their own (the password lane's), which were
    // cut too.
    assert_eq!(
        app.login("alice", "correct horse battery").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.signup("bob", "violet harbor nine").await.status(),
        StatusCode::OK
    );
    admin.close().await;
}

/// A server that is down refuses connections, which sqlx retries, backing off (the test above
/// blocks the database with `ALLOW_CONNECTIONS false` instead, an error sqlx gives up on at
/// once). After ten seconds of refusals, with the most connections kept open, the first login
/// and sign-up once the server is back succeed. (sqlx also reopens kept connections in the
/// background, each holding a slot of its pool meanwhile: the lane keeps fewer than it has
/// slots so that logins always find one. This test does not catch that case: it makes sqlx
/// reopen only about one connection of each pool in the background, which leaves free slots
/// even when the lane keeps all of its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_recover_after_the_server_refused_connections() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(relay) = Relay::to_test_database(false).await else {
        return;
    };
    let app = spawn_app_with(Backend::Postgres, |config| {
        config.database_url = relay.url_for(&config.database_url);
        config.db_min_connections = 8;
    })
    .await;
    app.signup_and_login("alice").await;

    relay.stop().await;
    // Long enough for sqlx's retries to back off by seconds: each refused login waits for a
    // connection until the acquire timeout (2 s in tests), then answers 503.
    let outage_ends = Instant::now() + Duration::from_secs(10);
    while Instant::now() < outage_ends {
        assert_eq!(
            app.login("alice", "correct horse battery").await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    relay.restart().await;

    assert_eq!(
        app.login("alice", "correct horse battery").await.status(),
        StatusCode::OK,
        "the first login after the server is back"
    );
    assert_eq!(
        app.signup("bob", "violet harbor nine").await.status(),
        StatusCode::OK
    );
}

/// A database restart cuts every pooled connection at once. A connection used less than a
/// second ago is not checked before its next use (that check is a round trip), so a request
/// may meet a cut one and fail with 503. The first sign of the cut (that failure, or the change
/// feed losing its connection) must make the pool check every connection released before it,
/// or each of them fails one more request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_connections_are_cut_at_most_one_request_fails() {
    if !Backend::postgres_available() {
        return;
    }
    let (app, token, admin) = signed_in_app_and_admin().await;
    cut_and_count_failures(&app.client, &app.base, &token, &admin, app_database(&app)).await;
    admin.close().await;
}

/// The same without the session cache, whose change feed usually notices a cut first: the
/// first failed query is then the only sign, and it alone must make the pool check the rest.
/// The service runs as its own process, since the time of the last cut is the process's, and
/// other tests in this one cut connections: those here on purpose, and every test on
/// PostgreSQL when it drops its database at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_query_alone_makes_the_pool_check_its_connections() {
    if !Backend::postgres_available() {
        return;
    }
    let (url, db) = fresh_postgres_database("gatehouse_test").await;
    let TestDb::Postgres {
        admin_url, name, ..
    } = &db
    else {
        unreachable!()
    };
    let process = Process::start(&[("DATABASE_URL", &url), ("SESSION_CACHE_ENTRIES", "0")]);
    let client = reqwest::Client::new();
    let token = process
        .signup_and_login(&client, "alice", "correct horse battery")
        .await;
    let admin = PgPool::connect(admin_url).await.unwrap();

    let (first, after_warm_up) =
        cut_and_count_failures(&client, &process.base, &token, &admin, name).await;
    admin.close().await;
    // Connections used less than a second ago are not checked before use, and nothing but a
    // failed query tells this service of the cut: its first request must have met one.
    if after_warm_up < Duration::from_millis(800) {
        assert_eq!(first, StatusCode::SERVICE_UNAVAILABLE);
    } else {
        eprintln!(
            "the cut took {after_warm_up:?}: the pool checked its idle connections anyway, so \
             the failed query was not the sign this time"
        );
    }
}

/// Warms several pooled connections of the service at `base`, cuts every connection to its
/// database, then asserts that of six requests in a row only the first may fail. Returns the
/// first one's status and how long after the warm-up it was sent.
async fn cut_and_count_failures(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    admin: &PgPool,
    database: &str,
) -> (StatusCode, Duration) {
    // The notes list always reads the database, whatever the session cache holds.
    let notes = || {
        client
            .get(format!("{base}/notes/"))
            .bearer_auth(token)
            .send()
    };
    // Several pooled connections, each used a moment ago.
    let warm = futures::future::join_all((0..6).map(|_| notes())).await;
    assert!(
        warm.into_iter()
            .all(|response| response.unwrap().status() == StatusCode::OK)
    );

    let warmed = Instant::now();

    cut_connections(admin, database).await;

    let after_warm_up = warmed.elapsed();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(notes().await.unwrap().status());
    }
    assert!(
        matches!(
            statuses[0],
            StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE
        ) && statuses[1..].iter().all(|s| *s == StatusCode::OK),
        "one 503 at most, then 200s: {statuses:?}"
    );
    (statuses[0], after_warm_up)
}

/// An app on PostgreSQL with a signed-in user, and a pool on the server's admin database.
async fn signed_in_app_and_admin() -> (TestApp, String, PgPool) {
    let app = spawn_app(Backend::Postgres).await;
    let token = app.signup_and_login("alice").await;
    let TestDb::Postgres { admin_url, .. } = &app.db else {
        unreachable!()
    };
    let admin = PgPool::connect(admin_url).await.unwrap();
    (app, token, admin)
}

fn app_database(app: &TestApp) -> &str {
    let TestDb::Postgres { name, .. } = &app.db else {
        unreachable!()
    };
    name
}

/// Cuts every connection to the app's database and waits until the server has closed them
/// (new ones the app opens meanwhile are left alone).
async fn cut_connections(admin: &PgPool, name: &str) {
    // PostgreSQL does not promise the order of WHERE conditions; in the select list the call
    // runs only on the rows the WHERE keeps.
    let cut: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(name)
    .fetch_all(admin)
    .await
    .unwrap();
    assert!(
        !cut.is_empty() && cut.iter().all(|(_, signalled)| *signalled),
        "every connection to {name} is told to end: {cut:?}"
    );
    let cut: Vec<i32> = cut.into_iter().map(|(pid, _)| pid).collect();
    // Normally a few milliseconds; a busy machine gets five seconds.
    for _ in 0..1000 {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&cut)
                .fetch_one(admin)
                .await
                .unwrap();
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the server kept connections to {name} five seconds after cutting them");
}

async fn set_connections(admin: &PgPool, name: &str, allow: bool) {
    // Database names cannot be bound as parameters; this one is generated by the test.
    let sql = format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {allow}");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(admin)
        .await
        .unwrap();
}

async fn eventually_unavailable(app: &TestApp, token: &str) -> reqwest::Response {
    for _ in 0..40 {
        let response = app.get_me(token).await;
        if response.status() != StatusCode::OK {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/users/me/ still answers from memory two seconds into the outage");
}

/// Polls for a bounded time: recovery needs a new connection, not a restart.
async fn recovers(app: &TestApp, token: &str) -> bool {
    for _ in 0..50 {
        if app.get_me(token).await.status() == StatusCode::OK {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Errors after which the same request succeeds once retried are a 503 with `Retry-After`,
/// not a 500: a lost serialization race, a deadlock victim, a lock not granted in time, and
/// a server that takes no writes (a standby during a failover). A trigger raises each code
/// as a note is written; once it is gone, the same request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_worth_a_retry_are_503() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let token = app.signup_and_login("alice").await;
    let note = serde_json::json!({"text": "a note", "completed": false});
    for code in ["40001", "40P01", "55P03", "25006"] {
        app.postgres_raises_on(code, "INSERT", "notes").await;
        let refused = app.post_auth("/notes/", &token, &note).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
        assert!(refused.headers().contains_key("retry-after"), "{code}");
        app.execute_sql("DROP TRIGGER away ON notes").await;
    }
    let written = app.post_auth("/notes/", &token, &note).await;
    assert_eq!(written.status(), StatusCode::OK);
}
