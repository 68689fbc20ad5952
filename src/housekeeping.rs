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
use crate::store::{Store, StoreError, StoreResult};

/// Rows looked at per statement: a few milliseconds of a write lock, even on SQLite, where
/// every login waits for the one writer.
pub const BATCH: i64 = 1_000;

/// How long after its end a session is swept. A request that found the session live just
/// before its deadline may still be recording the use, which pushes the deadline forward;
/// landing between the sweep's deletion of the session's refresh tokens and of the session
/// (two statements, batched), it would keep the session alive without them: its refresh
/// refused, and an old token's reuse unnoticed.
pub const ENDED_SESSION_GRACE: Duration = Duration::from_secs(5 * 60);

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

impl std::fmt::Display for Swept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ended sessions, {} expired link tokens, {} audit events and {} stale \
             login-failure counts",
            self.sessions, self.email_tokens, self.events, self.login_failures
        )
    }
}

/// A sweep that failed on at least one kind. What it deleted is gone all the same, and
/// counted. `cause` is the first failure. (It is in the message, not a `source`, so that a log
/// line that shows only the message shows it too.)
#[derive(Debug, thiserror::Error)]
#[error("housekeeping deleted {swept} but could not finish: {cause}")]
pub struct Interrupted {
    pub swept: Swept,
    pub cause: StoreError,
}

/// One sweep of everything, `BATCH` rows at a time.
pub async fn sweep(
    store: &dyn Store,
    policy: Policy,
    now: DateTime<Utc>,
) -> Result<Swept, Interrupted> {
    sweep_in_batches(store, policy, now, BATCH).await
}

/// `sweep` with batches of `batch` rows (tests walk several batches with a few rows).
pub async fn sweep_in_batches(
    store: &dyn Store,
    policy: Policy,
    now: DateTime<Utc>,
    batch: i64,
) -> Result<Swept, Interrupted> {
    assert!(batch > 0, "a sweep's batches hold at least one row");
    let mut swept = Swept::default();
    match sweep_into(&mut swept, store, policy, now, batch).await {
        Ok(()) => Ok(swept),
        Err(cause) => Err(Interrupted { swept, cause }),
    }
}

/// Each kind in turn, counting into `swept` as the rows go; returns the first failure. A kind that
/// fails while the database answers (a table the service may not delete from, a deadlock)
/// does not keep the kinds after it from being swept: audit events past their retention still
/// go. A database that is away stops the sweep, as each kind would only wait out the same
/// timeout.
async fn sweep_into(
    swept: &mut Swept,
    store: &dyn Store,
    policy: Policy,
    now: DateTime<Utc>,
    batch: i64,
) -> StoreResult<()> {
    let mut first_failure = None;
    let mut went = |outcome: StoreResult<()>| match outcome {
        Err(e @ StoreError::Unavailable(_)) => {
            if let Some(earlier) = &first_failure {
                tracing::warn!(error = %earlier, "housekeeping: a kind failed before the database went away");
            }
            Err(e)
        }
        // The caller reports the first; a later one would otherwise go unsaid.
        Err(e) if first_failure.is_some() => {
            tracing::warn!(error = %e, "housekeeping: another kind failed too");
            Ok(())
        }
        Err(e) => {
            first_failure = Some(e);
            Ok(())
        }
        Ok(()) => Ok(()),
    };
    if let Some(ended_before) = earlier(now, ENDED_SESSION_GRACE) {
        let sessions = Walked::Sessions { now: ended_before };
        went(walk(store, sessions, batch, &mut swept.sessions).await)?;
    }
    let email_tokens = Walked::EmailTokens { now };
    went(walk(store, email_tokens, batch, &mut swept.email_tokens).await)?;
    if let Some(before) = policy.audit_retention.and_then(|r| earlier(now, r)) {
        went(walk(store, Walked::Events { before }, batch, &mut swept.events).await)?;
    }
    if let Some(before) = earlier(now, FORGET_FAILURES_AFTER) {
        let locked_at = i32::try_from(policy.locked_at).unwrap_or(i32::MAX);
        let failures = &mut swept.login_failures;
        went(forget_failures(store, before, locked_at, batch, failures).await)?;
    }
    first_failure.map_or(Ok(()), Err)
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
            metrics.count_sweep(&outcome);
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

/// The tables walked by id, and what each walk deletes.
#[derive(Debug, Clone, Copy)]
enum Walked {
    Sessions { now: DateTime<Utc> },
    EmailTokens { now: DateTime<Utc> },
    Events { before: DateTime<Utc> },
}

/// Walks a table by id, batch after batch, until the store says there is nothing more to look
/// at; adds what it deletes to `deleted` as it goes.
async fn walk(store: &dyn Store, table: Walked, batch: i64, deleted: &mut u64) -> StoreResult<()> {
    let mut after = 0;
    loop {
        let step = match table {
            Walked::Sessions { now } => store.delete_ended_sessions(after, batch, now).await?,
            Walked::EmailTokens { now } => {
                store.delete_expired_email_tokens(after, batch, now).await?
            }
            Walked::Events { before } => store.delete_events_before(after, batch, before).await?,
        };
        *deleted += step.deleted;
        let Some(next) = step.next else {
            return Ok(());
        };
        after = next;
        tokio::time::sleep(PAUSE).await;
    }
}

/// Deletes stale failure counts, `batch` at a time, until a delete finds fewer; adds them to
/// `deleted` as it goes.
async fn forget_failures(
    store: &dyn Store,
    before: DateTime<Utc>,
    locked_at: i32,
    batch: i64,
    deleted: &mut u64,
) -> StoreResult<()> {
    loop {
        let n = store
            .delete_stale_login_failures(before, locked_at, batch)
            .await?;
        *deleted += n;
        if i64::try_from(n).unwrap_or(i64::MAX) < batch {
            return Ok(());
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
