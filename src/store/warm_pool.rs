//! A PostgreSQL connection that has just answered a statement is handed straight to the next
//! statement, without going back through sqlx's pool.
//!
//! sqlx checks every connection that comes back to its pool with a round trip to the server (a
//! `Sync` message, answered by `ReadyForQuery`; `PoolConnection::return_to_pool` in sqlx-core
//! 0.9.1, with no option to turn it off). It does so after the answer has been handed on, so
//! only a request waiting for that connection waits for it, but it wakes the database server
//! and this process once more per statement: a login, two statements, made four round trips
//! instead of two. Without that check, a login cost about 0.1 ms less CPU in the service and
//! 0.14 ms less in the database server (`bench/run.sh postgres 2`, which prints both per
//! login); under a login flood, those are the cores the other requests wait for.
//!
//! A connection is kept here only when its statement ran to its end: one that failed or was
//! cancelled (the request went away mid-statement) goes back to sqlx's pool, whose check
//! discards it if it is broken and otherwise reads what the statement left unread. A kept
//! connection is trusted as sqlx's pool trusts one idle for less than `RECHECK_AFTER_IDLE`
//! (`postgres.rs`): until the first sign of a cut (`lost_connections`). Older ones go back to
//! sqlx's pool, which checks them before their next use, reaps them when idle, and opens new
//! ones; the most recently used are taken first, so under load the few that are busy stay
//! here and the rest drift back. Transactions run on sqlx's pool, as before.
//!
//! A statement that finds no kept connection it may use waits in sqlx's pool, and while any
//! does, a connection that answers goes back there rather than being kept: kept ones would
//! otherwise go from statement to statement among those that come later, and the waiting one
//! would wait until one grew stale, a second (measured so before this rule: logins of 1 to 2 s
//! at the start of a flood). Transactions wait the same way. At most half the pool's
//! connections are kept, so that what asks sqlx's pool itself (the change feed reconnecting)
//! finds the other half as it always did. Nothing hands back a kept connection until the next
//! statement, so after a burst up to that many stay open, unused, until then.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo, Postgres};
use sqlx::{Either, Execute, Executor, SqlStr, Transaction};

use super::lost_connections;

/// How long a connection may sit unused before it is checked again before use.
pub(super) const RECHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// sqlx's pool with the connections that have just answered kept beside it. Statements run
/// through `&WarmPool` as through `&PgPool`.
pub(super) struct WarmPool {
    pool: PgPool,
    state: Mutex<State>,
    /// The most connections kept.
    most_kept: usize,
}

#[derive(Default)]
struct State {
    /// Connections whose last statement ran to its end, the most recently used last.
    kept: Vec<Warm>,
    /// Statements and transactions waiting for a connection from sqlx's pool.
    waiting: usize,
    /// Set at close, so that none is kept from the close.
    closing: bool,
}

struct Warm {
    connection: PoolConnection<Postgres>,
    since: Instant,
}

impl Warm {
    /// Whether it may be used without a check, as sqlx's pool would (`postgres.rs`).
    fn is_trusted(&self) -> bool {
        let idle_for = self.since.elapsed();
        idle_for < RECHECK_AFTER_IDLE && !lost_connections::may_be_cut(idle_for)
    }
}

impl WarmPool {
    pub(super) fn new(pool: PgPool) -> Self {
        let most_kept = usize::try_from(pool.options().get_max_connections() / 2).unwrap_or(0);
        Self {
            pool,
            state: Mutex::new(State::default()),
            most_kept,
        }
    }

    /// sqlx's pool itself: for its settings, migrations and the change feed's listener.
    pub(super) fn sqlx(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction on a connection from sqlx's pool.
    pub(super) async fn begin(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        let _waiting = self.wait();
        self.pool.begin().await
    }

    /// Hands the kept connections back to sqlx's pool, then closes it: waits for the
    /// connections in use to come back, then closes all.
    pub(super) async fn close(&self) {
        let kept = {
            let mut state = self.lock();
            state.closing = true;
            std::mem::take(&mut state.kept)
        };
        drop(kept);
        self.pool.close().await;
    }

    /// The most recently used kept connection if it may be used unchecked, or one from sqlx's
    /// pool.
    async fn acquire(&self) -> sqlx::Result<Checkout<'_>> {
        let connection = match self.take_kept_or_wait() {
            Ok(connection) => connection,
            Err(waiting) => {
                let connection = self.pool.acquire().await;
                drop(waiting);
                connection?
            }
        };
        Ok(Checkout {
            connection: Some(connection),
            home: self,
            answered: false,
        })
    }

    /// The last kept connection if it may be used unchecked; otherwise every kept one goes
    /// back to sqlx's pool (each is older than the last) and the caller waits there, counted
    /// in the same step, so that no connection is kept while it waits.
    fn take_kept_or_wait(&self) -> Result<PoolConnection<Postgres>, Waiting<'_>> {
        let stale = {
            let mut state = self.lock();
            if state.kept.last().is_some_and(Warm::is_trusted) {
                let last = state.kept.pop().expect("checked above");
                return Ok(last.connection);
            }
            state.waiting += 1;
            std::mem::take(&mut state.kept)
        };
        // Outside the lock: dropping a connection gives it to a task that checks it.
        drop(stale);
        Err(Waiting(self))
    }

    /// Counts the caller among those waiting in sqlx's pool until the guard is dropped.
    fn wait(&self) -> Waiting<'_> {
        self.lock().waiting += 1;
        Waiting(self)
    }

    /// Keeps a connection whose statement ran to its end, unless a statement waits in sqlx's
    /// pool; hands back there those not used for `RECHECK_AFTER_IDLE` (fewer are needed now)
    /// and the oldest beyond `most_kept`.
    fn keep(&self, connection: PoolConnection<Postgres>) {
        let handed_back: Vec<Warm> = {
            let mut state = self.lock();
            if state.closing || state.waiting > 0 || self.most_kept == 0 {
                return; // `connection` goes back to sqlx's pool
            }
            let stale = state.kept.iter().take_while(|w| !w.is_trusted()).count();
            let over = (state.kept.len() + 1).saturating_sub(self.most_kept);
            let handed_back = state.kept.drain(..stale.max(over)).collect();
            state.kept.push(Warm {
                connection,
                since: Instant::now(),
            });
            handed_back
        };
        drop(handed_back);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays whole whatever panicked while holding it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One statement or transaction waiting in sqlx's pool, counted until dropped.
struct Waiting<'p>(&'p WarmPool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

impl fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmPool")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// A connection lent to one statement: kept when the statement has answered in full, handed
/// back to sqlx's pool otherwise.
struct Checkout<'p> {
    connection: Option<PoolConnection<Postgres>>,
    home: &'p WarmPool,
    answered: bool,
}

impl Checkout<'_> {
    fn connection(&mut self) -> &mut sqlx::PgConnection {
        self.connection.as_mut().expect("present until dropped")
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && self.answered
        {
            self.home.keep(connection);
        }
    }
}

impl<'p> Executor<'p> for &'p WarmPool {
    type Database = Postgres;

    /// Reads the statement's results whole before handing on the first: the store reads small
    /// results, and a connection is known to be free for the next statement only once its
    /// results have all been read.
    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, sqlx::Result<Either<PgQueryResult, PgRow>>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        stream::once(async move {
            let mut checkout = self.acquire().await?;
            let results: Vec<_> = checkout
                .connection()
                .fetch_many(query)
                .try_collect()
                .await?;
            checkout.answered = true;
            Ok::<_, sqlx::Error>(stream::iter(results.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<PgRow>>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        Box::pin(async move {
            let mut checkout = self.acquire().await?;
            let row = checkout.connection().fetch_optional(query).await?;
            checkout.answered = true;
            Ok(row)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, sqlx::Result<PgStatement>>
    where
        'p: 'e,
    {
        Box::pin(async move {
            self.pool
                .acquire()
                .await?
                .prepare_with(sql, parameters)
                .await
        })
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, sqlx::Result<sqlx::Describe<Postgres>>>
    where
        'p: 'e,
    {
        Box::pin(async move { self.pool.acquire().await?.describe(sql).await })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::postgres::PgPoolOptions;
    use tokio::time::timeout;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(10);

    impl WarmPool {
        fn kept(&self) -> usize {
            self.lock().kept.len()
        }
    }

    /// A pool of 4 on the test database (`TEST_DATABASE_URL`); `None`, with a message, without
    /// one.
    async fn warm_pool() -> Option<WarmPool> {
        warm_pool_of(4).await
    }

    async fn warm_pool_of(max_connections: u32) -> Option<WarmPool> {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but TEST_DATABASE_URL is not set: the PostgreSQL tests must run in CI"
            );
            eprintln!("skipping: set TEST_DATABASE_URL to run the PostgreSQL tests");
            return None;
        };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(PATIENCE)
            .connect(&url)
            .await
            .unwrap();
        Some(WarmPool::new(pool))
    }

    /// Holds a connection long enough for others started with it to hold theirs too.
    async fn overlapping(pool: &WarmPool) {
        sqlx::query("SELECT pg_sleep(0.2)")
            .execute(pool)
            .await
            .unwrap();
    }

    async fn backend(pool: &WarmPool) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_connection_that_answered_serves_the_next_statement() {
        let Some(pool) = warm_pool().await else {
            return;
        };
        let first = backend(&pool).await;
        assert_eq!(pool.kept(), 1);
        assert_eq!(backend(&pool).await, first);
        let rows: Vec<i32> = sqlx::query_scalar("SELECT generate_series(1, 3)")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows, [1, 2, 3]);
        assert_eq!(backend(&pool).await, first);
        assert_eq!(pool.kept(), 1);
    }

    #[tokio::test]
    async fn a_failed_or_cancelled_statement_gives_its_connection_back_to_sqlx() {
        let Some(pool) = warm_pool().await else {
            return;
        };
        backend(&pool).await;
        let failed = sqlx::query("SELECT 1 / 0").execute(&pool).await;
        assert!(failed.is_err());
        assert_eq!(pool.kept(), 0, "not kept after an error");
        backend(&pool).await;

        let cancelled = timeout(
            Duration::from_millis(100),
            sqlx::query("SELECT pg_sleep(5)").execute(&pool),
        )
        .await;
        assert!(cancelled.is_err(), "the sleep outlasted its timeout");
        assert_eq!(pool.kept(), 0, "not kept after a cancelled statement");
        // sqlx's pool reads what the cancelled statement left before the connection serves
        // again; each statement gets its own answer.
        for n in 0..5 {
            let echoed: i32 = sqlx::query_scalar("SELECT $1")
                .bind(n)
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(echoed, n);
        }
    }

    #[tokio::test]
    async fn connections_unused_for_a_while_go_back_to_sqlx() {
        let Some(pool) = warm_pool().await else {
            return;
        };
        // Two at once: two connections, both kept.
        tokio::join!(overlapping(&pool), overlapping(&pool));
        assert_eq!(pool.kept(), 2);
        tokio::time::sleep(RECHECK_AFTER_IDLE + Duration::from_millis(100)).await;
        backend(&pool).await;
        assert_eq!(pool.kept(), 1, "only the one just used is kept");
        // Every other is back in sqlx's pool, idle, once sqlx has checked it.
        let all_back = async {
            while pool.sqlx().num_idle() + 1 < pool.sqlx().size() as usize {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(PATIENCE, all_back)
            .await
            .expect("the connections not kept went back to sqlx's pool");
        assert!(pool.sqlx().num_idle() >= 1);
    }

    #[tokio::test]
    async fn half_the_pool_is_left_to_transactions() {
        let Some(pool) = warm_pool().await else {
            return;
        };
        tokio::join!(
            overlapping(&pool),
            overlapping(&pool),
            overlapping(&pool),
            overlapping(&pool)
        );
        assert_eq!(pool.sqlx().size(), 4);
        assert_eq!(pool.kept(), 2, "half of the 4 are kept");
        let mut transactions = Vec::new();
        for _ in 0..2 {
            let transaction = timeout(Duration::from_secs(1), pool.begin())
                .await
                .expect("the half not kept is free for transactions")
                .unwrap();
            transactions.push(transaction);
        }
    }

    /// One connection is held by a long statement, the other goes from statement to statement
    /// of a busy loop. A statement that comes meanwhile waits in sqlx's pool: the loop's
    /// connection must go there once its statement has answered, not to the loop's next.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_statement_waiting_in_sqlx_pool_gets_the_next_connection_to_answer() {
        let Some(pool) = warm_pool_of(2).await else {
            return;
        };
        let long = sqlx::query("SELECT pg_sleep(5)").execute(&pool);
        let busy = async {
            loop {
                backend(&pool).await;
            }
        };
        let waiting = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let started = Instant::now();
            backend(&pool).await;
            started.elapsed()
        };
        let waited = tokio::select! {
            _ = long => panic!("the statement that came last waited for the long one"),
            () = busy => unreachable!(),
            waited = waiting => waited,
        };
        assert!(waited < Duration::from_secs(1), "waited {waited:?}");
    }

    #[tokio::test]
    async fn closing_hands_the_kept_connections_back() {
        let Some(pool) = warm_pool().await else {
            return;
        };
        tokio::join!(overlapping(&pool), overlapping(&pool));
        assert_eq!(pool.kept(), 2);
        timeout(PATIENCE, pool.close())
            .await
            .expect("sqlx's pool closes once every connection is back");
        assert!(pool.sqlx().is_closed());
        assert!(sqlx::query("SELECT 1").execute(&pool).await.is_err());
    }
}
