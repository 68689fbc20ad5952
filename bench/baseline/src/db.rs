//! The same database as the service: one pool of the same size and SQLite settings.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::env;

pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A user as `GET /users/me/` shows it.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub disabled: bool,
}

const USER_BY_KEY: &str =
    "SELECT id, username, email, full_name, disabled FROM users WHERE username_key = $1";

impl Db {
    /// Opens `DATABASE_URL` as the service does (pool sizes 16 and 8; for SQLite WAL and no ping
    /// before each use).
    pub async fn connect() -> anyhow::Result<Self> {
        let url = env("DATABASE_URL")?;
        if url.starts_with("postgres") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .connect(&url)
                .await
                .context("connecting to PostgreSQL")?;
            Ok(Self::Postgres(pool))
        } else {
            let options = SqliteConnectOptions::from_str(&url)?
                .foreign_keys(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .context("opening SQLite")?;
            Ok(Self::Sqlite(pool))
        }
    }

    /// One lookup by the unique (indexed) username key.
    pub async fn user_by_key(&self, key: &str) -> sqlx::Result<Option<UserRow>> {
        match self {
            Self::Postgres(pool) => {
                sqlx::query_as(USER_BY_KEY)
                    .bind(key)
                    .fetch_optional(pool)
                    .await
            }
            Self::Sqlite(pool) => {
                sqlx::query_as(USER_BY_KEY)
                    .bind(key)
                    .fetch_optional(pool)
                    .await
            }
        }
    }
}

/// Inserts users `bench{from}..=bench{to}` with one shared hash of `BENCH_PASSWORD`; the
/// schema must exist (`gatehouse migrate`). Existing names are skipped.
pub async fn seed(from: u64, to: u64) -> anyhow::Result<()> {
    let password = env("BENCH_PASSWORD")?;
    let hash = crate::hashing::hash(&password)?;
    let db = Db::connect().await?;
    let now = chrono::Utc::now();
    let (from, to) = (from as i64, to as i64);
    let started = Instant::now();
    let inserted = match &db {
        Db::Postgres(pool) => {
            let done = sqlx::query(
                "INSERT INTO users (username, username_key, hashed_password, created_at, updated_at) \
                 SELECT 'bench' || g, 'bench' || g, $1, $2, $2 FROM generate_series($3::bigint, $4::bigint) g \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&hash)
            .bind(now)
            .bind(from)
            .bind(to)
            .execute(pool)
            .await?;
            sqlx::query("ANALYZE users").execute(pool).await?;
            done.rows_affected()
        }
        Db::Sqlite(pool) => {
            let done = sqlx::query(
                "WITH RECURSIVE seq(n) AS (SELECT $3 UNION ALL SELECT n + 1 FROM seq WHERE n < $4) \
                 INSERT OR IGNORE INTO users (username, username_key, hashed_password, created_at, updated_at) \
                 SELECT 'bench' || n, 'bench' || n, $1, $2, $2 FROM seq",
            )
            .bind(&hash)
            .bind(now)
            .bind(from)
            .bind(to)
            .execute(pool)
            .await?;
            sqlx::query("ANALYZE").execute(pool).await?;
            done.rows_affected()
        }
    };
    println!(
        "seeded {inserted} users (bench{from}..=bench{to}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
