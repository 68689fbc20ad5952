use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::RwLockReadGuard;
use tokio::time::timeout;

use super::*;

const PATIENCE: Duration = Duration::from_secs(10);

impl WarmPool {
    fn warm(&self) -> usize {
        self.lock().warm.len()
    }
}

/// A pool of 4 on the test database (`TEST_DATABASE_URL`), with a hold on the process's clock
/// of cuts (no test moves it meanwhile); `None`, with a message, without a test database.
async fn warm_pool() -> Option<(WarmPool, RwLockReadGuard<'static, ()>)> {
    warm_pool_of(4).await
}

/// A pool of `max_connections`, all open and idle in sqlx's pool, so that statements started
/// together find theirs at once.
async fn warm_pool_of(max_connections: u32) -> Option<(WarmPool, RwLockReadGuard<'static, ()>)> {
    warm_pool_with(PgPoolOptions::new().max_connections(max_connections)).await
}

/// The test database's address; `None`, with a message, where there is none.
fn test_database_url() -> Option<String> {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but TEST_DATABASE_URL is not set: the PostgreSQL tests must run in CI"
        );
        eprintln!("skipping: set TEST_DATABASE_URL to run the PostgreSQL tests");
        return None;
    };
    Some(url)
}

async fn warm_pool_with(
    options: PgPoolOptions,
) -> Option<(WarmPool, RwLockReadGuard<'static, ()>)> {
    let url = test_database_url()?;
    let clock = lost_connections::CLOCK.read().await;
    let max_connections = options.get_max_connections();
    let pool = options
        .acquire_timeout(PATIENCE)
        .connect(&url)
        .await
        .unwrap();
    let open: Vec<_> =
        futures_util::future::try_join_all((0..max_connections).map(|_| pool.acquire()))
            .await
            .unwrap();
    drop(open);
    until_idle(&pool, max_connections as usize, "the connections opened").await;
    Some((WarmPool::new(pool), clock))
}

/// Waits until sqlx's pool holds `count` idle connections: one handed back is idle only once
/// sqlx has checked it. `what` names the connections, for the failure message.
async fn until_idle(pool: &PgPool, count: usize, what: &str) {
    let idle = async {
        while pool.num_idle() < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    timeout(PATIENCE, idle)
        .await
        .unwrap_or_else(|_| panic!("{what} went back to sqlx's pool"));
}

/// Holds a connection long enough for others started with it to hold theirs too; the
/// database server's process for it.
async fn overlapping(pool: &WarmPool) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid() FROM pg_sleep(0.2)")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn backend(pool: &WarmPool) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until the database server has no process left for any of `backends`: their
/// connections were closed. Asked on a connection of its own.
async fn until_closed(url: &str, backends: &[i32]) {
    let mut observer = sqlx::PgConnection::connect(url).await.unwrap();
    let closed = async {
        loop {
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(backends)
                    .fetch_one(&mut observer)
                    .await
                    .unwrap();
            if open == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(PATIENCE, closed)
        .await
        .unwrap_or_else(|_| panic!("the connections of {backends:?} are still open"));
}

#[tokio::test]
async fn a_connection_that_answered_serves_the_next_statement() {
    let Some((pool, _clock)) = warm_pool().await else {
        return;
    };
    let first = backend(&pool).await;
    assert_eq!(pool.warm(), 1);
    assert_eq!(backend(&pool).await, first);
    let rows: Vec<i32> = sqlx::query_scalar("SELECT generate_series(1, 3)")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows, [1, 2, 3]);
    assert_eq!(backend(&pool).await, first);
    assert_eq!(pool.warm(), 1);
}

#[tokio::test]
async fn a_failed_or_cancelled_statement_gives_its_connection_back_to_sqlx() {
    let Some((pool, _clock)) = warm_pool().await else {
        return;
    };
    backend(&pool).await;
    let failed = sqlx::query("SELECT 1 / 0").execute(&pool).await;
    assert!(failed.is_err());
    assert_eq!(pool.warm(), 0, "not kept warm after an error");
    backend(&pool).await;

    let cancelled = timeout(
        Duration::from_millis(100),
        sqlx::query("SELECT pg_sleep(5)").execute(&pool),
    )
    .await;
    assert!(cancelled.is_err(), "the sleep outlasted its timeout");
    assert_eq!(pool.warm(), 0, "not kept warm after a cancelled statement");
    // Whichever connection serves them, the statements after get their own answers, not what
    // the cancelled one left unread.
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
    let Some((pool, _clock)) = warm_pool().await else {
        return;
    };
    // Two at once: two connections, both kept warm.
    tokio::join!(overlapping(&pool), overlapping(&pool));
    assert_eq!(pool.warm(), 2);
    tokio::time::sleep(RECHECK_AFTER_IDLE + Duration::from_millis(100)).await;
    backend(&pool).await;
    assert_eq!(pool.warm(), 1, "only the one just used is kept warm");
    // Every other is back in sqlx's pool, idle, once sqlx has checked it.
    let not_warm = pool.sqlx().size() as usize - 1;
    until_idle(pool.sqlx(), not_warm, "the connections not kept warm").await;
}

#[tokio::test]
async fn a_connection_out_of_sqlx_pool_for_long_goes_back_after_its_statement() {
    let Some((pool, _clock)) = warm_pool().await else {
        return;
    };
    backend(&pool).await;
    let out_since = pool.lock().warm[0].out_since;
    backend(&pool).await;
    assert_eq!(
        pool.lock().warm[0].out_since,
        out_since,
        "a warm connection's time out of sqlx's pool runs on from statement to statement"
    );

    let Some(long_ago) = Instant::now().checked_sub(HAND_BACK_AFTER) else {
        eprintln!("skipped the hand-back: the monotonic clock began less than a minute ago");
        return;
    };
    let connection = pool.sqlx().acquire().await.unwrap();
    pool.keep_warm(connection, long_ago);
    assert_eq!(pool.warm(), 1, "only the first is kept warm");
}

/// Four statements at once on a pool of 4: half are kept warm, and the other two are idle in
/// sqlx's pool once it has checked them.
async fn half_warm_half_idle(pool: &WarmPool) {
    tokio::join!(
        overlapping(pool),
        overlapping(pool),
        overlapping(pool),
        overlapping(pool)
    );
    assert_eq!(pool.sqlx().size(), 4);
    assert_eq!(pool.warm(), 2, "half of the 4 are kept warm");
    until_idle(pool.sqlx(), 2, "the two not kept warm").await;
}

#[tokio::test]
async fn half_the_pool_is_left_to_transactions() {
    let Some((pool, _clock)) = warm_pool().await else {
        return;
    };
    half_warm_half_idle(&pool).await;
    let mut transactions = Vec::new();
    for _ in 0..2 {
        let transaction = timeout(Duration::from_secs(1), pool.begin())
            .await
            .expect("the half not kept warm is free for transactions")
            .unwrap();
        transactions.push(transaction);
    }
    assert_eq!(
        pool.warm(),
        2,
        "none went back while sqlx's pool had idle ones"
    );

    // sqlx's pool has none idle now: the next transaction takes a warm connection back.
    let third = timeout(Duration::from_secs(2), pool.begin())
        .await
        .expect("a warm connection went back to sqlx's pool for the transaction")
        .unwrap();
    assert_eq!(pool.warm(), 1);
    transactions.push(third);
}

/// Two waiting in sqlx's pool and one connection idle there: the second may not count on the
/// idle one too, or it would wait until a statement came to hand one back.
#[tokio::test]
async fn a_transaction_beside_another_waiting_gets_a_warm_connection_back() {
    let Some((pool, _clock)) = warm_pool().await else {
        return;
    };
    half_warm_half_idle(&pool).await;
    let _first = pool.begin().await.unwrap();
    assert_eq!(pool.sqlx().num_idle(), 1);
    // Another statement or transaction is waiting for that one idle connection.
    let _other = Waiting::counted(&pool, &mut pool.lock());
    let _second = timeout(Duration::from_secs(2), pool.begin())
        .await
        .expect("the transaction got a connection")
        .unwrap();
    assert_eq!(
        pool.warm(),
        1,
        "a warm connection went back for the one waiting beside it"
    );
}

/// One connection is held by a long statement, the other goes from statement to statement of
/// a busy loop. A statement that comes meanwhile waits in sqlx's pool: the loop's connection
/// must go there once its statement has answered, not to the loop's next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_waiting_in_sqlx_pool_gets_the_next_connection_to_answer() {
    let Some((pool, _clock)) = warm_pool_of(2).await else {
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
async fn closing_closes_the_warm_connections_too() {
    let Some((pool, _clock)) = warm_pool().await else {
        return;
    };
    let (first, second) = tokio::join!(overlapping(&pool), overlapping(&pool));
    assert_eq!(pool.warm(), 2);
    timeout(PATIENCE, pool.close())
        .await
        .expect("sqlx's pool closes once every connection is back");
    assert!(sqlx::query("SELECT 1").execute(&pool).await.is_err());
    until_closed(&test_database_url().unwrap(), &[first, second]).await;
}

/// A runtime shut down before its store: a warm connection leaving sqlx's pool's hands would
/// spawn a task, and panic without a runtime; with `min_connections`, even one closed at once.
#[test]
fn a_pool_dropped_outside_a_runtime_closes_its_warm_connections() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pool = runtime.block_on(async {
        let options = PgPoolOptions::new().max_connections(4).min_connections(1);
        let (pool, _clock) = warm_pool_with(options).await?;
        let warm = backend(&pool).await;
        Some((pool, warm))
    });
    let Some((pool, warm)) = pool else {
        return;
    };
    assert_eq!(pool.warm(), 1);
    drop(runtime);
    drop(pool);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(until_closed(&test_database_url().unwrap(), &[warm]));
}
