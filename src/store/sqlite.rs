//! SQLite: the embedded default, so `cargo run` works with no database server.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::session_cache::{SessionCache, WalWatch};
use super::sql::{
    RowLock, bind_new_session, impl_store, insert_event, insert_refresh_token, insert_session,
};
use super::{ConnectOptions, NewSession, Session, Store, StoreResult};

pub struct SqliteStore {
    pool: SqlitePool,
    cache: SessionCache,
}

impl SqliteStore {
    pub async fn connect(options: &ConnectOptions) -> anyhow::Result<Self> {
        let connect = SqliteConnectOptions::from_str(&options.url)
            .with_context(|| format!("DATABASE_URL {:?} is not a SQLite URL", options.url))?
            .create_if_missing(true)
            .foreign_keys(true)
            // WAL lets readers proceed while one connection writes.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        if let Some(dir) = connect
            .get_filename()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the database folder {}", dir.display()))?;
        }
        // Opened before the pool, so that every connection reports its commits to it.
        let watch = watch_commits(&connect, options.session_cache_entries).await;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A connection is a thread in this process, not a socket that can go stale: the
            // default ping before each use was one more thread round trip per query.
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout);
        let pool = match &watch {
            Some(watch) => watch.reported_by(pool),
            None => pool,
        };
        let pool = pool
            .connect_with(connect.clone())
            .await
            .with_context(|| format!("opening {}", options.url))?;
        super::run_migrations!(
            &pool,
            sqlx::migrate!("migrations/sqlite"),
            options.migrations,
            "SQLite"
        );
        let cache = match watch {
            Some(watch) => SessionCache::watching(options.session_cache_entries, watch),
            None => SessionCache::disabled(),
        };
        Ok(Self { pool, cache })
    }
}

impl SqliteStore {
    /// A transaction that writes, as every transaction of the store does. `BEGIN IMMEDIATE`
    /// takes the write lock first, waiting its turn for up to the busy timeout, so that what
    /// the transaction reads stays current until it commits. After a plain `BEGIN`, a
    /// transaction that read before a concurrent writer committed could not write at all:
    /// SQLite refuses it at once (`SQLITE_BUSY_SNAPSHOT`, a 503), where PostgreSQL waits and
    /// sees the other's write. Two uses of one refresh token at once must be a rotation and a
    /// reuse on both backends.
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Whether a row exists. SQLite has no row locks: the transaction's `BEGIN IMMEDIATE`
    /// already holds the database's write lock, which is more than PostgreSQL's row lock.
    async fn lock_row(
        tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
        row: RowLock,
    ) -> sqlx::Result<bool> {
        let (sql, id) = match row {
            RowLock::Session(id) => ("SELECT id FROM sessions WHERE id = $1", id),
            RowLock::User(id) => ("SELECT id FROM users WHERE id = $1", id),
        };
        let found: Option<i64> = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(found.is_some())
    }

    /// Starts a session with its first refresh token and its login event, in one transaction:
    /// all of them or none, and one commit. (SQLite has no inserts inside `WITH`, which lets
    /// PostgreSQL do this in one statement; here a statement costs no network round trip.)
    async fn start_session(&self, session: NewSession) -> StoreResult<Option<Session>> {
        let mut tx = self.begin_write().await?;
        let started: Option<Session> =
            bind_new_session!(sqlx::query_as(insert_session!("")), &session)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(started) = started else {
            return Ok(None);
        };
        if let Some(token_hash) = &session.first_refresh_token_hash {
            insert_refresh_token!(&mut *tx, started.id, token_hash, session.created_at).await?;
        }
        if let Some(event) = session.event {
            insert_event!(&mut *tx, event).await?;
        }
        tx.commit().await?;
        Ok(Some(started))
    }

    /// At `close`. Nothing runs in the background for SQLite (the cache checks the file at
    /// each lookup); the cache just stops serving.
    fn stop_background_work(&self) {
        self.cache.close();
    }

    /// Itself: its connections run on threads of their own and wake whichever runtime waits.
    fn own_connections(
        self: Arc<Self>,
        _runtime: &tokio::runtime::Handle,
        _role: &str,
        _max_connections: u32,
        _min_connections: u32,
    ) -> Arc<dyn Store> {
        self
    }
}

/// The watch on the database file's commits that the session cache needs, or none where it
/// cannot be had (an in-memory database has no WAL index file, and neither do platforms without
/// positioned reads): the cache is then off.
async fn watch_commits(connect: &SqliteConnectOptions, entries: usize) -> Option<Arc<WalWatch>> {
    if entries == 0 {
        return None;
    }
    match WalWatch::open(connect).await {
        Ok(watch) => Some(Arc::new(watch)),
        Err(err) => {
            tracing::info!(error = %format!("{err:#}"), "session cache off: every session is read from the database");
            None
        }
    }
}

impl_store!(SqliteStore);
