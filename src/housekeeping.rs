//! Housekeeping: deleting what no request can use any more, so that the tables hold what is
//! live and not every login since the first. A sweep deletes ended sessions (with their
//! refresh tokens), expired emailed-link tokens, audit events older than their retention, and
//! the failure counts of names nobody has typed for a month, unless the count locks an account.
//!
//! Every instance sweeps on its own timer (`HOUSEKEEPING_INTERVAL_SECONDS`). Sweeps that meet
//! delete different rows or nothing, so instances need no coordination; `gatehouse
//! housekeeping` sweeps once, for deployments that prefer a scheduled job.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreResult};

/// Rows looked at per statement: a few milliseconds of a write lock, even on SQLite, where
/// every login waits for the one writer.
pub const BATCH: i64 = 1_000;

/// Between two batches, so that waiting writers go first.
const PAUSE: Duration = Duration::from_millis(5);

/// A failure count untouched this long is forgotten, unless it locks its account. Its delays
/// (at most `LoginThrottle::max_delay`, 15 minutes) passed long ago; kept, it would only make
/// every name an attacker ever typed a row forever. Forgetting gives a guesser the free
/// failures again once a month at most: far fewer guesses than one per longest delay.
pub const FORGET_FAILURES_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a sweep keeps, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `None` keeps every audit event.
    pub audit_retention: Option<Duration>,
    /// The failure count that locks an account (`LoginThrottle::lock_after`, at most 100).
    pub locked_at: u32,
}

impl Policy {
    pub fn of(config: &Config) -> Self {
        Self {
            audit_retention: config.housekeeping.audit_retention,
            locked_at: config.abuse.login_throttle.lock_after.min(100),
        }
    }
}

/// How many rows of each kind a sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u64,
    pub email_tokens: u64,
    pub events: u64,
    pub login_failures: u64,
}

impl Swept {
    pub fn total(&self) -> u64 {
        self.sessions + self.email_tokens + self.events + self.login_failures
    }
}

/// One sweep of everything, `BATCH` rows at a time.
pub async fn sweep(store: &dyn Store, policy: Policy, now: DateTime<Utc>) -> StoreResult<Swept> {
    sweep_in_batches(store, policy, now, BATCH).await
}

/// `sweep` with batches of `batch` rows (tests walk several batches with a few rows).
pub async fn sweep_in_batches(
    store: &dyn Store,
    policy: Policy,
    now: DateTime<Utc>,
    batch: i64,
) -> StoreResult<Swept> {
    assert!(batch > 0, "a sweep's batches hold at least one row");
    let sessions = walk(store, Walked::Sessions, batch, now).await?;
    let email_tokens = walk(store, Walked::EmailTokens, batch, now).await?;
    let events = match policy.audit_retention.and_then(|r| earlier(now, r)) {
        Some(before) => trim(store, Trimmed::Events { before }, batch).await?,
        None => 0,
    };
    let login_failures = match earlier(now, FORGET_FAILURES_AFTER) {
        Some(before) => {
            let locked_at = i32::try_from(policy.locked_at).unwrap_or(i32::MAX);
            let stale = Trimmed::LoginFailures { before, locked_at };
            trim(store, stale, batch).await?
        }
        None => 0,
    };
    Ok(Swept {
        sessions,
        email_tokens,
        events,
        login_failures,
    })
}

/// The periodic sweep; dropping it stops it.
pub struct Sweeper(tokio::task::JoinHandle<()>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sweeps every `interval`, the first time one interval after the start, until the `Sweeper`
/// is dropped. A sweep that fails (the database is away) is logged and tried again next time.
pub fn spawn(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    policy: Policy,
    interval: Duration,
) -> Sweeper {
    Sweeper(tokio::spawn(async move {
        let start = tokio::time::Instant::now() + interval;
        let mut ticks = tokio::time::interval_at(start, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let outcome = sweep(store.as_ref(), policy, clock.now()).await;
            metrics.count_sweep(outcome.as_ref().map_err(drop));
            match outcome {
                Ok(swept) if swept.total() > 0 => tracing::info!(
                    sessions = swept.sessions,
                    email_tokens = swept.email_tokens,
                    events = swept.events,
                    login_failures = swept.login_failures,
                    "housekeeping deleted what has ended"
                ),
                Ok(_) => tracing::debug!("housekeeping found nothing to delete"),
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; trying again later"),
            }
        }
    }))
}

/// The tables walked by id.
#[derive(Debug, Clone, Copy)]
enum Walked {
    Sessions,
    EmailTokens,
}

/// Walks a table by id, batch after batch, to its end; how many rows were deleted.
async fn walk(
    store: &dyn Store,
    table: Walked,
    batch: i64,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let (mut after, mut deleted) = (0, 0);
    loop {
        let step = match table {
            Walked::Sessions => store.delete_ended_sessions(after, batch, now).await?,
            Walked::EmailTokens => store.delete_expired_email_tokens(after, batch, now).await?,
        };
        deleted += step.deleted;
        let Some(next) = step.next else {
            return Ok(deleted);
        };
        after = next;
        tokio::time::sleep(PAUSE).await;
    }
}

/// The deletes that take the first rows that qualify.
#[derive(Debug, Clone, Copy)]
enum Trimmed {
    Events {
        before: DateTime<Utc>,
    },
    LoginFailures {
        before: DateTime<Utc>,
        locked_at: i32,
    },
}

/// Repeats a delete of up to `batch` rows until one deletes fewer; how many in all.
async fn trim(store: &dyn Store, what: Trimmed, batch: i64) -> StoreResult<u64> {
    let mut deleted = 0;
    loop {
        let n = match what {
            Trimmed::Events { before } => store.delete_oldest_events(before, batch).await?,
            Trimmed::LoginFailures { before, locked_at } => {
                store
                    .delete_stale_login_failures(before, locked_at, batch)
                    .await?
            }
        };
        deleted += n;
        if i64::try_from(n).unwrap_or(i64::MAX) < batch {
            return Ok(deleted);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// `by` before `now`; `None` before the start of time, when nothing can be that old.
fn earlier(now: DateTime<Utc>, by: Duration) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|by| now.checked_sub_signed(by))
}
