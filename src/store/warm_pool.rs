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
//! A connection is kept warm here only when its statement ran to its end: one that failed or
//! was cancelled (the request went away mid-statement) goes back to sqlx's pool, whose check
//! discards it if it is broken and otherwise reads what the statement left unread. A warm
//! connection is trusted as sqlx's pool trusts one idle for less than `RECHECK_AFTER_IDLE`
//! (`postgres.rs`): until the first sign of a cut (`lost_connections`). Older ones go back to
//! sqlx's pool, which checks them before their next use, reaps them when idle, and opens new
//! ones; the most recently used are taken first, so under load the few that are busy stay
//! warm and the rest drift back. A connection out of sqlx's pool for `HAND_BACK_AFTER` goes
//! back after its statement all the same, so that sqlx's `max_lifetime` still retires it.
//!
//! A statement that finds no warm connection it may use waits in sqlx's pool, and while any
//! does, a connection that answers goes back there rather than being kept warm: warm ones
//! would otherwise go from statement to statement among those that come later, and the
//! waiting one would wait until one grew stale, a second (measured so before this rule: logins
//! of 1 to 2 s at the start of a flood). A transaction waits in sqlx's pool the same way, and
//! when that pool has fewer idle connections than wait there, the oldest warm one goes back.
//! At most half the pool's connections are kept warm; what asks sqlx's pool directly (the
//! change feed reconnecting) may still wait for a warm one to go back, which the next
//! statement or transaction does. Nothing else hands back a warm connection, so after a burst
//! up to that many stay open, unused, until then.

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

/// How long a connection may be out of sqlx's pool, going from statement to statement, before
/// it goes back after its statement: sqlx retires it there once past `max_lifetime`.
const HAND_BACK_AFTER: Duration = Duration::from_secs(60);

/// sqlx's pool with the connections that have just answered kept warm beside it. Statements
/// run through `&WarmPool` as through `&PgPool`.
pub(super) struct WarmPool {
    pool: PgPool,
    state: Mutex<State>,
    /// The most connections kept warm.
    most_warm: usize,
}

#[derive(Default)]
struct State {
    /// Connections whose last statement ran to its end, the most recently used last.
    warm: Vec<Warm>,
    /// Statements and transactions waiting for a connection from sqlx's pool.
    waiting: usize,
    /// Set at close, so that none is kept warm from the close.
    closing: bool,
}

struct Warm {
    connection: PoolConnection<Postgres>,
    /// When its last statement answered.
    since: Instant,
    /// When it left sqlx's pool.
    out_since: Instant,
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
        let most_warm = usize::try_from(pool.options().get_max_connections() / 2).unwrap_or(0);
        Self {
            pool,
            state: Mutex::new(State::default()),
            most_warm,
        }
    }

    /// sqlx's pool itself: for its settings, migrations and the change feed's listener.
    pub(super) fn sqlx(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction on a connection from sqlx's pool. If that pool has fewer idle connections
    /// than statements and transactions waiting there, this one included, the oldest warm
    /// connection goes back to it, so that the transaction does not wait for a statement to
    /// come and hand one back. Counting the others that wait matters: two transactions begun
    /// together would otherwise both count on the one idle connection, and the second wait.
    pub(super) async fn begin(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        let (waiting, handed_back) = {
            let mut state = self.lock();
            let waiting = Waiting::counted(self, &mut state);
            let short = self.pool.num_idle() < state.waiting;
            let handed_back = (short && !state.warm.is_empty()).then(|| state.warm.remove(0));
            (waiting, handed_back)
        };
        // Outside the lock: dropping a connection gives it to a task that checks it.
        drop(handed_back);
        let connection = self.pool.acquire().await;
        // No longer waiting once it has its connection, before the round trip of `BEGIN`: a
        // connection that answers meanwhile may be kept warm again.
        drop(waiting);
        Transaction::begin(connection?, None).await
    }

    /// Closes sqlx's pool, hands the warm connections back to it (which closes them), and waits
    /// for the connections in use to come back, then closes all.
    pub(super) async fn close(&self) {
        // Marks the pool closed at once, so what comes back to it from here on is closed.
        let closed = self.pool.close();
        let warm = {
            let mut state = self.lock();
            state.closing = true;
            std::mem::take(&mut state.warm)
        };
        drop(warm);
        closed.await;
    }

    /// The most recently used warm connection if it may be used unchecked, or one from sqlx's
    /// pool.
    async fn acquire(&self) -> sqlx::Result<Checkout<'_>> {
        let (connection, out_since) = match self.take_warm_or_wait() {
            Ok(warm) => (warm.connection, warm.out_since),
            Err(waiting) => {
                let connection = self.pool.acquire().await;
                drop(waiting);
                (connection?, Instant::now())
            }
        };
        Ok(Checkout {
            connection: Some(connection),
            out_since,
            home: self,
            answered: false,
        })
    }

    /// The last warm connection if it may be used unchecked; otherwise every warm one goes back
    /// to sqlx's pool (each is older than the last) and the caller waits there, counted in the
    /// same step, so that no connection is kept warm while it waits.
    fn take_warm_or_wait(&self) -> Result<Warm, Waiting<'_>> {
        let (waiting, stale) = {
            let mut state = self.lock();
            if state.warm.last().is_some_and(Warm::is_trusted) {
                return Ok(state.warm.pop().expect("checked above"));
            }
            (
                Waiting::counted(self, &mut state),
                std::mem::take(&mut state.warm),
            )
        };
        // Outside the lock: dropping a connection gives it to a task that checks it.
        drop(stale);
        Err(waiting)
    }

    /// Keeps warm a connection whose statement ran to its end, unless a statement waits in
    /// sqlx's pool or it has been out of that pool for `HAND_BACK_AFTER`; hands back there
    /// those not used for `RECHECK_AFTER_IDLE` (fewer are needed now) and the oldest beyond
    /// `most_warm`.
    fn keep_warm(&self, connection: PoolConnection<Postgres>, out_since: Instant) {
        let handed_back: Vec<Warm> = {
            let mut state = self.lock();
            if state.closing
                || state.waiting > 0
                || self.most_warm == 0
                || out_since.elapsed() >= HAND_BACK_AFTER
            {
                return; // `connection` goes back to sqlx's pool
            }
            let stale = state.warm.iter().take_while(|w| !w.is_trusted()).count();
            let over = (state.warm.len() + 1).saturating_sub(self.most_warm);
            let handed_back = state.warm.drain(..stale.max(over)).collect();
            state.warm.push(Warm {
                connection,
                since: Instant::now(),
                out_since,
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

impl Drop for WarmPool {
    /// A connection leaving sqlx's pool's hands spawns a task (to check it and take it back,
    /// or, with `min_connections`, to open another in its place), and sqlx panics where there
    /// is no Tokio runtime. Dropped without one (a runtime shut down before its store), the
    /// warm connections are dropped inside a runtime made for the purpose and never run:
    /// its shutdown drops those tasks, which closes the connections.
    fn drop(&mut self) {
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let warm = std::mem::take(&mut state.warm);
        if warm.is_empty() || tokio::runtime::Handle::try_current().is_ok() {
            return; // `warm` goes back to sqlx's pool
        }
        match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => {
                let _inside = runtime.enter();
                drop(warm);
            }
            // The process is out of threads or memory: left open rather than a panic in a
            // drop; the database server closes them when the process ends.
            Err(_) => warm.into_iter().for_each(std::mem::forget),
        }
    }
}

/// One statement or transaction waiting in sqlx's pool, counted until dropped.
struct Waiting<'p>(&'p WarmPool);

impl<'p> Waiting<'p> {
    /// Counts one more, under the lock that decided it waits, so that no connection is kept
    /// warm from that moment on.
    fn counted(home: &'p WarmPool, state: &mut State) -> Self {
        state.waiting += 1;
        Self(home)
    }
}

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

/// A connection lent to one statement: kept warm when the statement has answered in full,
/// handed back to sqlx's pool otherwise.
struct Checkout<'p> {
    connection: Option<PoolConnection<Postgres>>,
    out_since: Instant,
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
        let Some(connection) = self.connection.take() else {
            return;
        };
        if self.answered {
            self.home.keep_warm(connection, self.out_since);
        } else {
            drop(connection); // back to sqlx's pool, which checks it
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

    // Preparing and describing a statement (the `query!` macros, `sqlx prepare`) go to sqlx's
    // pool directly: the store never asks for either at run time, so they bypass the warm
    // connections and the rules above.
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
mod tests;
