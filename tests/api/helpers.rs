//! `spawn_app()`: the real service on a free port with a fresh database, and typed helpers
//! to drive it over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use gatehouse::clock::ManualClock;
use gatehouse::config::{
    AbuseProtection, Config, HashParams, RateLimit, RateLimits, SecretKey, SessionLifetimes,
    default_public_url,
};
use gatehouse::http::AppState;
use gatehouse::server::Server;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{PgPool, SqlitePool};
use std::sync::Arc;

/// The key every test app signs with, so tests can mint their own tokens.
pub const SECRET: &[u8] = b"test-secret-key-of-at-least-32-bytes!!";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// PostgreSQL when `TEST_DATABASE_URL` is set; in CI it must be.
    pub fn postgres_available() -> bool {
        if std::env::var("TEST_DATABASE_URL").is_ok() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but TEST_DATABASE_URL is not set: the PostgreSQL suite must run in CI"
        );
        eprintln!("skipping the PostgreSQL variant: set TEST_DATABASE_URL to run it");
        false
    }
}

/// Direct access to the test's database, to check what was stored.
pub enum TestDb {
    Sqlite(SqlitePool),
    Postgres {
        pool: PgPool,
        admin_url: String,
        name: String,
    },
}

pub struct TestApp {
    pub base: String,
    /// The service's clock: tests move it to expire tokens and sessions.
    pub clock: Arc<ManualClock>,
    /// The running service's state, for steps no endpoint offers yet.
    pub state: AppState,
    pub client: reqwest::Client,
    pub db: TestDb,
    /// The data folder (and the SQLite file); removed when the test ends.
    _data_dir: tempfile::TempDir,
}

/// Builds a configuration for tests: cheap Argon2id parameters, a known key.
pub fn test_config(database_url: String, data_dir: &std::path::Path) -> Config {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Config {
        database_url,
        listen,
        public_url: default_public_url(listen),
        data_dir: data_dir.to_path_buf(),
        secret_key: SecretKey::new(SECRET.to_vec()),
        access_token_ttl: Duration::from_secs(30 * 60),
        sessions: SessionLifetimes::default(),
        cors_origins: vec!["http://localhost:3000".into()],
        hash_params: HashParams {
            memory_kib: 4096,
            iterations: 1,
            parallelism: 1,
        },
        db_acquire_timeout: Duration::from_secs(2),
        session_cache_entries: 10_000,
        // One kept open of each kind: the code that keeps them runs in every test, while an
        // app holds few connections (many tests run at once against one server).
        db_min_connections: 1,
        production: false,
        jwt: Default::default(),
        // Generous per-address limits: every test client is 127.0.0.1. The abuse tests tighten them.
        abuse: AbuseProtection {
            rate_limits: RateLimits {
                login: RateLimit::per_minute(10_000),
                signup: RateLimit::per_minute(10_000),
                password_reset: RateLimit::per_minute(10_000),
            },
            ..AbuseProtection::default()
        },
        mail: Default::default(),
        housekeeping: Default::default(),
    }
}

/// Polls `done` every 50 ms until it holds; fails the test if it does not `within`.
pub async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "{what}: not after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like `spawn_app`, with a chance to adjust the configuration first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let (database_url, db) = fresh_database(backend, data_dir.path()).await;
    start_app(database_url, db, data_dir, adjust, Router::new()).await
}

/// Like `spawn_app`, serving `routes` beside Gatehouse's own (`Server::with_routes`), as an
/// application built on Gatehouse does.
pub async fn spawn_app_with_routes(backend: Backend, routes: Router<AppState>) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let (database_url, db) = fresh_database(backend, data_dir.path()).await;
    start_app(database_url, db, data_dir, |_| {}, routes).await
}

/// An app on `database_url` (a URL of `db`'s database, as another role, say); `db` goes with
/// the app.
pub async fn spawn_app_on(database_url: String, db: TestDb) -> TestApp {
    start_app(
        database_url,
        db,
        tempfile::tempdir().unwrap(),
        |_| {},
        Router::new(),
    )
    .await
}

async fn start_app(
    database_url: String,
    db: TestDb,
    data_dir: tempfile::TempDir,
    adjust: impl FnOnce(&mut Config),
    routes: Router<AppState>,
) -> TestApp {
    let mut config = test_config(database_url, data_dir.path());
    adjust(&mut config);
    let clock = Arc::new(ManualClock::starting_now());
    let server = Server::build_with_clock(config, clock.clone())
        .await
        .expect("the app starts")
        .with_routes(routes);
    let address = server.local_addr();
    let state = server.state().clone();
    tokio::spawn(server.run(std::future::pending()));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    TestApp {
        base: format!("http://{address}"),
        clock,
        state,
        client,
        db,
        _data_dir: data_dir,
    }
}

async fn fresh_database(backend: Backend, data_dir: &std::path::Path) -> (String, TestDb) {
    match backend {
        Backend::Sqlite => {
            let url = format!("sqlite://{}?mode=rwc", data_dir.join("test.db").display());
            // The app runs the migrations; this pool opens lazily, after them.
            let pool = SqlitePool::connect_lazy(&url).unwrap();
            (url, TestDb::Sqlite(pool))
        }
        Backend::Postgres => fresh_postgres_database("gatehouse_test").await,
    }
}

/// A new, empty PostgreSQL database on `TEST_DATABASE_URL`'s server (named `{prefix}_<uuid>`),
/// with a lazy pool; dropping the `TestDb` drops the database.
pub async fn fresh_postgres_database(prefix: &str) -> (String, TestDb) {
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect(&admin_url)
        .await
        .expect("TEST_DATABASE_URL answers");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&name);
    let pool = PgPool::connect_lazy(url.as_str()).unwrap();
    (
        url.to_string(),
        TestDb::Postgres {
            pool,
            admin_url,
            name,
        },
    )
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres {
            admin_url, name, ..
        } = self
        {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; the cleanup gets a runtime of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(admin) = PgPool::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await;
                    }
                });
            })
            .join();
        }
    }
}

/// Signs `username` up with the service at `base` and logs in, asserting each step worked;
/// returns the access token. For services this file did not start (`Process`) as well.
pub async fn signup_and_login_at(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> String {
    let signup = client
        .post(format!("{base}/users/"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::OK, "sign-up of {username}");
    let login = client
        .post(format!("{base}/token"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK, "login of {username}");
    let body: Value = login.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

impl TestApp {
    /// The time on the service's clock.
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use gatehouse::clock::Clock;
        self.clock.now()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn signup(&self, username: &str, password: &str) -> Response {
        self.post_json(
            "/users/",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Signs up and returns an access token, asserting each step worked.
    pub async fn signup_and_login(&self, username: &str) -> String {
        signup_and_login_at(&self.client, &self.base, username, "correct horse battery").await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.client
            .post(self.url("/token"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    pub async fn token_for(&self, username: &str, password: &str) -> String {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {username}");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn get_me(&self, token: &str) -> Response {
        self.get_auth("/users/me/", token).await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Runs a statement against the test database (to set up states the API cannot reach).
    pub async fn execute(&self, sql: &'static str, bind: &str) {
        match &self.db {
            TestDb::Sqlite(pool) => {
                sqlx::query(sql).bind(bind).execute(pool).await.unwrap();
            }
            TestDb::Postgres { pool, .. } => {
                sqlx::query(sql).bind(bind).execute(pool).await.unwrap();
            }
        }
    }

    /// The id of the user with this (already folded) username.
    pub async fn user_id(&self, username: &str) -> i64 {
        self.state
            .store
            .user_by_key(username)
            .await
            .unwrap()
            .expect("the user exists")
            .id
    }

    /// Runs a statement without parameters on the test database.
    pub async fn execute_sql(&self, sql: &'static str) {
        match &self.db {
            TestDb::Sqlite(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
            TestDb::Postgres { pool, .. } => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
        }
    }

    /// Reads one text column of one row from the test database.
    pub async fn fetch_text(&self, sql: &'static str, bind: &str) -> Option<String> {
        match &self.db {
            TestDb::Sqlite(pool) => sqlx::query_scalar(sql)
                .bind(bind)
                .fetch_optional(pool)
                .await
                .unwrap(),
            TestDb::Postgres { pool, .. } => sqlx::query_scalar(sql)
                .bind(bind)
                .fetch_optional(pool)
                .await
                .unwrap(),
        }
    }

    /// Reads one count (a `BIGINT`) from the test database.
    pub async fn count(&self, sql: &'static str, bind: &str) -> i64 {
        match &self.db {
            TestDb::Sqlite(pool) => sqlx::query_scalar(sql).bind(bind).fetch_one(pool).await,
            TestDb::Postgres { pool, .. } => {
                sqlx::query_scalar(sql).bind(bind).fetch_one(pool).await
            }
        }
        .unwrap()
    }

    /// Has PostgreSQL answer 57P03 ("cannot connect now", which the service takes for an
    /// outage) whenever `event` (`INSERT`, `DELETE`, ...) writes to `table`, until
    /// `DROP TRIGGER away ON <table>`.
    pub async fn postgres_away_on(&self, event: &str, table: &str) {
        self.postgres_raises_on("57P03", event, table).await;
    }

    /// Has PostgreSQL raise the error `sqlstate` ("refused with <sqlstate>") whenever `event`
    /// writes to `table`, until `DROP TRIGGER away ON <table>`.
    pub async fn postgres_raises_on(&self, sqlstate: &str, event: &str, table: &str) {
        let TestDb::Postgres { pool, .. } = &self.db else {
            panic!("a PostgreSQL test app");
        };
        let function = "CREATE OR REPLACE FUNCTION away() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'refused with %', TG_ARGV[0] USING ERRCODE = TG_ARGV[0]; END $$";
        sqlx::query(function).execute(pool).await.unwrap();
        let trigger = format!(
            "CREATE TRIGGER away BEFORE {event} ON {table} FOR EACH ROW \
             EXECUTE FUNCTION away('{sqlstate}')"
        );
        let trigger = sqlx::query(sqlx::AssertSqlSafe(trigger));
        trigger.execute(pool).await.unwrap();
    }

    pub async fn stored_hash(&self, username: &str) -> String {
        self.fetch_text(
            "SELECT hashed_password FROM users WHERE username = $1",
            username,
        )
        .await
        .expect("the user exists")
    }
}

/// The value of the hidden field `name` in a page's form.
pub fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name}: {html}"));
    html[start + marker.len()..]
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// The value of the hidden `csrf_token` field in a page.
pub fn csrf_in(html: &str) -> String {
    hidden_field(html, "csrf_token")
}

/// Asserts status and `detail` of an error response, returning the response's headers.
pub async fn assert_detail(
    response: Response,
    status: StatusCode,
    detail: &str,
) -> reqwest::header::HeaderMap {
    let headers = response.headers().clone();
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"detail": detail}));
    headers
}

/// Asserts an HTML page with `status`, returning the page.
pub async fn assert_page(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    response.text().await.unwrap()
}

/// Declares each scenario once and runs it on SQLite and (when available) PostgreSQL:
/// `both_backends!(signup_works, ...)` expects `async fn signup_works(backend: Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::helpers::Backend::postgres_available() {
                        super::$name($crate::helpers::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}
