//! The slow-down of an account after consecutive failed logins (NIST SP 800-63B rev. 4,
//! section 3.2.2). The count lives in the database, keyed by a hash of the typed name, so it
//! holds across restarts and instances, and an unknown name is counted and slowed exactly like
//! a known one: the answers never tell whether an account exists.
//!
//! After `free_failures`, an attempt before the delay has passed is refused without checking
//! the password; the delay doubles per failure up to `max_delay`. At `lock_after` (at most
//! 100) failures, only a password reset (`clear`) opens the account again, so an attacker can
//! hold it closed no longer than it takes its owner to reset; an owner still signed in may
//! instead confirm the password after the longest delay (`admit_signed_in`). Checks of one
//! account take turns (`CheckQueue`), so that guesses sent in parallel meet the gate one by
//! one. A count below the lock that sees no failure for a month is forgotten
//! (`crate::housekeeping`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

use crate::config::LoginThrottle;
use crate::domain::Username;
use crate::error::{Error, Result};
use crate::store::{LoginFailures, Store};

/// The key of a typed name: SHA-256 of its folded form, so a password typed into the
/// username field is never stored in clear.
pub fn name_hash(username: &str) -> String {
    hex::encode(Sha256::digest(Username::fold(username).as_bytes()))
}

/// Whether a login attempt may be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Too many failures lately: try again after this long.
    Wait(Duration),
    /// Too many failures in a row: only a password reset opens the account to a login.
    Locked,
}

/// The gate for an account with these failures, at `now`.
pub fn gate(policy: &LoginThrottle, failures: Option<LoginFailures>, now: DateTime<Utc>) -> Gate {
    let Some(LoginFailures {
        failures,
        last_failure_at,
    }) = failures
    else {
        return Gate::Open;
    };
    let failures = u32::try_from(failures).unwrap_or(0);
    if failures >= policy.lock_after.min(100) {
        return Gate::Locked;
    }
    if failures < policy.free_failures {
        return Gate::Open;
    }
    let doublings = (failures - policy.free_failures).min(30);
    let delay = policy
        .base_delay
        .saturating_mul(1 << doublings)
        .min(policy.max_delay);
    let until =
        last_failure_at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    match (until - now).to_std() {
        Ok(left) if !left.is_zero() => Gate::Wait(left),
        _ => Gate::Open,
    }
}

/// Refuses the attempt while the account is slowed down or locked by `failures` (read with
/// the account, `Store::login_record`). Otherwise tells whether failures are on record (a
/// successful login then clears them).
pub fn admit(
    policy: &LoginThrottle,
    failures: Option<LoginFailures>,
    now: DateTime<Utc>,
) -> Result<FailuresOnRecord> {
    let on_record = FailuresOnRecord(failures.is_some());
    match gate(policy, failures, now) {
        Gate::Open => Ok(on_record),
        Gate::Wait(left) => Err(wait(left)),
        Gate::Locked => Err(Error::TooManyRequests {
            detail:
                "Too many failed login attempts for this account; reset the password to sign in"
                    .into(),
            retry_after: None,
        }),
    }
}

/// Like `admit`, for a signed-in user confirming their password. The session already proves
/// a sign-in, so a locked account is slowed at the longest delay instead of closed: its owner
/// can still change the password, which clears the count, and whoever holds a stolen session
/// still guesses no faster than that.
pub fn admit_signed_in(
    policy: &LoginThrottle,
    failures: Option<LoginFailures>,
    now: DateTime<Utc>,
) -> Result<FailuresOnRecord> {
    let Some(LoginFailures {
        last_failure_at, ..
    }) = failures
    else {
        return admit(policy, failures, now);
    };
    if gate(policy, failures, now) != Gate::Locked {
        return admit(policy, failures, now);
    }
    let until = last_failure_at
        + chrono::Duration::from_std(policy.max_delay).unwrap_or(chrono::Duration::MAX);
    match (until - now).to_std() {
        Ok(left) if !left.is_zero() => Err(wait(left)),
        _ => Ok(FailuresOnRecord(true)),
    }
}

/// The refusal of an attempt that must wait `left`.
fn wait(left: Duration) -> Error {
    Error::TooManyRequests {
        detail: "Too many failed login attempts for this account; try again later".into(),
        retry_after: Some((left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)),
    }
}

/// Whether an account had failed attempts counted when its login began.
#[derive(Debug, Clone, Copy)]
pub struct FailuresOnRecord(pub bool);

/// Counts a failed attempt against the typed name; returns the count, this one included.
/// Concurrent attempts each get a count of their own, so exactly one reaches each threshold.
pub async fn record_failure(store: &dyn Store, username: &str, now: DateTime<Utc>) -> Result<u32> {
    let counted = store.add_login_failure(&name_hash(username), now).await?;
    Ok(u32::try_from(counted.failures).unwrap_or(0))
}

/// Forgets the failures of an account once its password is proven: a successful login, or
/// the current password asked for by a change of password or address or by an account
/// deletion. (A new password forgets them in its own transaction, `UserStore::set_password`.)
pub async fn clear(store: &dyn Store, username: &str) -> Result<()> {
    store.clear_login_failures(&name_hash(username)).await?;
    Ok(())
}

/// Password checks of one account take turns on this instance.
///
/// A check reads the account's failures, checks the password (an Argon2 hash), then counts a
/// failure. Checks side by side would all read the count from before any of them, so guesses
/// sent in parallel would pass a closed gate together; in turn, each reads what the one before
/// it wrote. An account has an entry only while a check of it runs or waits, so the map holds
/// no more than the requests in flight. (Instances do not share turns: with several, parallel
/// guesses get at most one check per instance past a closed gate.)
#[derive(Clone, Default)]
pub struct CheckQueue {
    lines: Arc<Mutex<HashMap<String, Line>>>,
}

/// One account's checks: the lock they take in turn, and how many hold or await it.
#[derive(Default)]
struct Line {
    turn: Arc<tokio::sync::Mutex<()>>,
    places: usize,
}

/// A place in an account's line, from the moment a check joins it until its turn ends or it
/// gives up (its wait timed out, or its request was dropped): the last to leave removes the
/// line, whatever order the lock and the places are released in.
struct Place {
    queue: CheckQueue,
    key: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut lines = self.queue.lock();
        if let Some(line) = lines.get_mut(&self.key) {
            line.places -= 1;
            if line.places == 0 {
                lines.remove(&self.key);
            }
        }
    }
}

/// An account's turn: its next check waits until this is dropped.
pub struct Turn {
    _held: OwnedMutexGuard<()>,
    _place: Place,
}

impl CheckQueue {
    /// Waits for the turn of the account with this name hash, at most `max_wait`; past it,
    /// too many attempts for the account are waiting and this one is refused (429).
    pub async fn turn(&self, name_hash: &str, max_wait: Duration) -> Result<Turn> {
        let (place, turn) = {
            let mut lines = self.lock();
            let line = lines.entry(name_hash.to_string()).or_default();
            line.places += 1;
            let place = Place {
                queue: self.clone(),
                key: name_hash.to_string(),
            };
            (place, Arc::clone(&line.turn))
        };
        match tokio::time::timeout(max_wait, turn.lock_owned()).await {
            Ok(held) => Ok(Turn {
                _held: held,
                _place: place,
            }),
            Err(_) => Err(Error::TooManyRequests {
                detail: "Too many login attempts for this account at once; try again".into(),
                retry_after: Some(1),
            }),
        }
    }

    /// How many accounts have a check running or waiting.
    pub fn accounts_in_line(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Line>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(failures: i32, seconds_ago: i64, now: DateTime<Utc>) -> Option<LoginFailures> {
        Some(LoginFailures {
            failures,
            last_failure_at: now - chrono::Duration::seconds(seconds_ago),
        })
    }

    #[test]
    fn the_delay_grows_then_caps_and_the_hundredth_failure_locks() {
        let policy = LoginThrottle::default();
        let now = Utc::now();
        assert_eq!(gate(&policy, None, now), Gate::Open);
        assert_eq!(gate(&policy, at(4, 0, now), now), Gate::Open);
        let wait = |failures| match gate(&policy, at(failures, 0, now), now) {
            Gate::Wait(left) => left,
            other => panic!("{failures}: {other:?}"),
        };
        assert!(wait(5) <= Duration::from_secs(2));
        assert!(wait(7) > Duration::from_secs(7) && wait(7) <= Duration::from_secs(8));
        assert_eq!(wait(60), Duration::from_secs(15 * 60));
        assert_eq!(gate(&policy, at(60, 15 * 60, now), now), Gate::Open);
        assert_eq!(gate(&policy, at(100, 86_400, now), now), Gate::Locked);
    }

    #[test]
    fn names_are_keyed_by_their_folded_hash() {
        assert_eq!(name_hash("Alice"), name_hash("alice"));
        assert_ne!(name_hash("alice"), name_hash("bob"));
        assert_eq!(name_hash("alice").len(), 64);
    }

    #[tokio::test]
    async fn one_accounts_checks_take_turns_and_leave_nothing_behind() {
        let queue = CheckQueue::default();
        let wait = Duration::from_millis(50);
        let first = queue.turn("a", wait).await.unwrap();
        // Another account does not wait for it.
        let other = queue.turn("b", wait).await.unwrap();
        assert_eq!(queue.accounts_in_line(), 2);
        // The same account waits, and past its wait is refused.
        let refused = queue.turn("a", wait).await.err().unwrap();
        assert!(matches!(
            refused,
            Error::TooManyRequests {
                retry_after: Some(1),
                ..
            }
        ));
        let next = tokio::spawn({
            let queue = queue.clone();
            async move { queue.turn("a", Duration::from_secs(5)).await.map(drop) }
        });
        tokio::task::yield_now().await;
        drop(first);
        next.await.unwrap().unwrap();
        drop(other);
        assert_eq!(queue.accounts_in_line(), 0);

        // A check whose request is dropped while it waits leaves nothing behind either.
        let holder = queue.turn("c", wait).await.unwrap();
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.turn("c", Duration::from_secs(5)).await.map(drop) }
        });
        tokio::task::yield_now().await;
        drop(holder);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(queue.accounts_in_line(), 0);
    }
}
