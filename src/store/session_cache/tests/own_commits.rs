//! The cache against a real database file whose pool reports its commits, as the service's.

use sqlx::{Connection, SqliteConnection, SqlitePool};

use super::*;
use crate::store::session_cache::wal_watch::frame_count;

struct Database {
    _dir: tempfile::TempDir,
    options: SqliteConnectOptions,
    /// This process's pool: its commits are reported to the watch.
    pool: SqlitePool,
    watch: Arc<WalWatch>,
}

impl Database {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = wal_database(&dir);
        let watch = Arc::new(WalWatch::open(&options).await.unwrap());
        let pool = watch
            .reported_by(SqlitePoolOptions::new().max_connections(3))
            .connect_with(options.clone())
            .await
            .unwrap();
        for table in [
            "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)",
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER)",
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT)",
        ] {
            sqlx::query(table).execute(&pool).await.unwrap();
        }
        Self {
            _dir: dir,
            options,
            pool,
            watch,
        }
    }

    async fn run(&self, sql: &'static str) {
        sqlx::query(sql).execute(&self.pool).await.unwrap();
    }

    /// A commit of another connection, one that reports nothing (another process, say).
    async fn run_elsewhere(&self, sql: &'static str) {
        let mut other = SqliteConnection::connect_with(&self.options).await.unwrap();
        sqlx::query(sql).execute(&mut other).await.unwrap();
    }

    /// A cache that has checked the current header and holds sessions 1, 2, 3 of users 7, 8, 9.
    fn filled_cache(&self) -> SessionCache {
        let cache = SessionCache::watching(10, Arc::clone(&self.watch));
        for (session_id, user_id) in [(1, 7), (2, 8), (3, 9)] {
            fill(&cache, session_id, user_id);
        }
        cache
    }
}

fn held(cache: &SessionCache) -> Vec<i64> {
    [1, 2, 3]
        .into_iter()
        .filter(|id| cached(cache, *id, t(1)).is_some())
        .collect()
}

#[tokio::test]
async fn own_commits_that_change_no_session_keep_the_cache() {
    let db = Database::new().await;
    let cache = db.filled_cache();
    for _ in 0..3 {
        db.run("INSERT INTO events (kind) VALUES ('login_success')")
            .await;
        db.run("INSERT INTO sessions (user_id) VALUES (7)").await;
    }
    assert_eq!(held(&cache), [1, 2, 3], "new rows leave every copy valid");
}

#[tokio::test]
async fn own_commits_forget_exactly_the_rows_they_change() {
    let db = Database::new().await;
    db.run("INSERT INTO users (id, name) VALUES (7, 'a'), (8, 'b'), (9, 'c')")
        .await;
    db.run("INSERT INTO sessions (id, user_id) VALUES (1, 7), (2, 8), (3, 9)")
        .await;
    let cache = db.filled_cache();

    // Written without `forget_after`: the hooks alone must tell the cache.
    db.run("DELETE FROM sessions WHERE id = 1").await;
    assert_eq!(held(&cache), [2, 3], "the deleted session is forgotten");
    db.run("UPDATE users SET name = 'changed' WHERE id = 8")
        .await;
    assert_eq!(held(&cache), [3], "a changed user's sessions are forgotten");
}

#[tokio::test]
async fn a_rolled_back_change_forgets_nothing() {
    let db = Database::new().await;
    db.run("INSERT INTO sessions (id, user_id) VALUES (1, 7), (2, 8), (3, 9)")
        .await;
    let cache = db.filled_cache();
    // One connection throughout: what it noted must not ride on its next commit.
    let mut connection = db.pool.acquire().await.unwrap();
    let mut tx = connection.begin().await.unwrap();
    sqlx::query("DELETE FROM sessions WHERE id = 3")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    sqlx::query("INSERT INTO events (kind) VALUES ('after')")
        .execute(&mut *connection)
        .await
        .unwrap();
    assert_eq!(held(&cache), [1, 2, 3]);
}

#[tokio::test]
async fn a_commit_of_another_connection_empties_the_cache() {
    let db = Database::new().await;
    let cache = db.filled_cache();
    db.run("INSERT INTO events (kind) VALUES ('ours')").await;
    db.run_elsewhere("INSERT INTO events (kind) VALUES ('theirs')")
        .await;
    db.run("INSERT INTO events (kind) VALUES ('ours again')")
        .await;
    assert_eq!(held(&cache), Vec::<i64>::new());
}

#[tokio::test]
async fn the_chain_of_own_commits_survives_checkpoints_and_wal_restarts() {
    let db = Database::new().await;
    let cache = db.filled_cache();
    // Past SQLite's checkpoint threshold (1,000 frames; one frame per insert here), so that
    // the WAL is checkpointed by our hook and restarted by a later commit.
    for round in 0..15 {
        for _ in 0..100 {
            db.run("INSERT INTO events (kind) VALUES ('x')").await;
        }
        assert_eq!(held(&cache), [1, 2, 3], "after round {round}");
    }
    let header = db.watch.header().unwrap();
    assert!(
        frame_count(&header) < 1000,
        "the WAL was checkpointed and restarted: {} frames",
        frame_count(&header)
    );
}

#[tokio::test]
async fn a_commit_reported_late_is_landing_then_followed() {
    let db = Database::new().await;
    let cache = db.filled_cache();
    let mut connection = db.pool.acquire().await.unwrap();
    // Stopped after its first row, this statement commits when reset, unreported for now.
    let _: i64 = sqlx::query_scalar("INSERT INTO events (kind) VALUES ('early') RETURNING id")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    assert_eq!(
        held(&cache),
        Vec::<i64>::new(),
        "while unreported, nothing is served from memory"
    );
    // The connection's next statement that runs to its end reports it.
    sqlx::query("SELECT 1")
        .execute(&mut *connection)
        .await
        .unwrap();
    assert_eq!(
        held(&cache),
        [1, 2, 3],
        "kept through the wait, then served"
    );
}

#[tokio::test]
async fn a_closed_connection_leaves_nothing_under_way() {
    let db = Database::new().await;
    // A write that changes nothing: its commit hook runs, its WAL hook never will.
    db.run("DELETE FROM sessions WHERE id = -1").await;
    assert!(!db.watch.own().landing_is_empty());
    db.pool.close().await;
    assert!(db.watch.own().landing_is_empty());
}
