//! Checking a username and password, shared by the API (`POST /token`) and the login page.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::sessions::Authenticated;
use super::throttle::{CheckQueue, Turn};
use super::{PasswordHasher, Verification, throttle};
use crate::config::LoginThrottle;
use crate::domain::{Password, PasswordContext, PasswordPolicy, Username};
use crate::error::{AuthFailure, Error, Result};
use crate::store::{PasswordChange, PasswordSet, Store, User, UserCredentials};

/// Why a login was refused, with what its record on the account's activity needs. The client
/// learns only the `Error` each turns into.
#[derive(Debug)]
pub enum LoginError {
    /// A wrong password or an unknown name. `user_id` is the account the name belongs to, if
    /// any; `failures` counts the failures against the typed name, this one included.
    BadCredentials { user_id: Option<i64>, failures: u32 },
    /// The right password on a disabled account.
    Inactive { user_id: i64 },
    /// Not a verdict on the credentials: slowed down, locked, or a store or hasher failure.
    Unchecked(Error),
}

impl From<LoginError> for Error {
    fn from(refused: LoginError) -> Self {
        match refused {
            LoginError::BadCredentials { .. } => Error::Unauthorized(AuthFailure::BadCredentials),
            LoginError::Inactive { .. } => Error::InactiveUser,
            LoginError::Unchecked(error) => error,
        }
    }
}

/// What checking an account's password takes: the hasher, the slow-down policy, and the
/// queue in which one account's checks take turns, with how long one may wait there.
#[derive(Clone, Copy)]
pub struct PasswordCheck<'a> {
    pub hasher: &'a PasswordHasher,
    pub throttle: &'a LoginThrottle,
    pub queue: &'a CheckQueue,
    pub max_wait: Duration,
}

impl PasswordCheck<'_> {
    /// Waits for the turn of the account with this name hash (`CheckQueue`).
    async fn turn(&self, name_hash: &str) -> Result<Turn> {
        self.queue.turn(name_hash, self.max_wait).await
    }
}

/// Returns the user, with the hash the password matched, when the password is right and the
/// account active.
///
/// An account slowed down by failed logins is refused before any check (`throttle`). Unknown
/// users are checked against a dummy hash and counted like known ones, so the answer and its
/// time are the same whether or not the account exists. Legacy (bcrypt) or outdated hashes
/// are replaced after a successful check.
pub async fn authenticate(
    store: &dyn Store,
    check: PasswordCheck<'_>,
    now: DateTime<Utc>,
    username: &str,
    password: String,
) -> Result<Authenticated, LoginError> {
    let name_hash = throttle::name_hash(username);
    let _turn = check
        .turn(&name_hash)
        .await
        .map_err(LoginError::Unchecked)?;
    let record = store
        .login_record(&Username::fold(username), &name_hash)
        .await
        .map_err(|e| LoginError::Unchecked(e.into()))?;
    let on_record =
        throttle::admit(check.throttle, record.failures, now).map_err(LoginError::Unchecked)?;
    let checked = check_credentials(store, check.hasher, record.credentials, password, now)
        .await
        .map_err(LoginError::Unchecked)?;
    match checked {
        Checked::Wrong { user_id } => {
            let failures = throttle::record_failure(store, username, now)
                .await
                .map_err(LoginError::Unchecked)?;
            Err(LoginError::BadCredentials { user_id, failures })
        }
        Checked::Inactive { user_id } => Err(LoginError::Inactive { user_id }),
        Checked::Right(account) => {
            // Most logins have no failures to forget: no write for them (a failure counted by
            // another attempt while this one was hashing then stays counted).
            if on_record.0 {
                throttle::clear(store, username)
                    .await
                    .map_err(LoginError::Unchecked)?;
            }
            Ok(account)
        }
    }
}

/// What checking a password found.
enum Checked {
    Right(Authenticated),
    /// A wrong password, or no such user (`user_id` is `None`).
    Wrong {
        user_id: Option<i64>,
    },
    /// The right password on a disabled account.
    Inactive {
        user_id: i64,
    },
}

/// Checks `password` against the account's hash, or against a dummy one when `credentials`
/// is `None` (no such user).
async fn check_credentials(
    store: &dyn Store,
    hasher: &PasswordHasher,
    credentials: Option<UserCredentials>,
    password: String,
    now: DateTime<Utc>,
) -> Result<Checked> {
    let user_id = credentials.as_ref().map(|c| c.user.id);
    let Some(attempt) = Password::attempt(password) else {
        // Absurdly long: refused, but only after the same work as any other attempt.
        hasher
            .verify(&Password::attempt(String::new()).expect("fits"), None)
            .await?;
        return Ok(Checked::Wrong { user_id });
    };
    let stored = credentials.as_ref().map(|c| c.hashed_password.as_str());
    let verification = hasher.verify(&attempt, stored).await?;
    let Some(credentials) = credentials else {
        return Ok(Checked::Wrong { user_id: None });
    };
    Ok(match verification {
        Verification::Mismatch => Checked::Wrong { user_id },
        _ if credentials.user.disabled => Checked::Inactive {
            user_id: credentials.user.id,
        },
        Verification::Match => Checked::Right(credentials.into()),
        Verification::MatchNeedsRehash => {
            let password_hash = upgrade_hash(store, hasher, &credentials, &attempt, now).await;
            Checked::Right(Authenticated {
                password_hash,
                user: credentials.user,
            })
        }
    })
}

/// Replaces a matching hash made with older parameters (or bcrypt) by a current one. Best
/// effort: the password was right, so a busy hasher or a failed write does not fail the login;
/// the next login tries again. Returns the hash the account has now, as far as this login
/// knows: the new one if it was written, else the one that was checked.
async fn upgrade_hash(
    store: &dyn Store,
    hasher: &PasswordHasher,
    credentials: &UserCredentials,
    attempt: &Password,
    now: DateTime<Utc>,
) -> String {
    let user_id = credentials.user.id;
    let old = &credentials.hashed_password;
    let upgraded = match hasher.hash(attempt).await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::warn!(user_id, error = %e, "password hash not upgraded: hashing failed");
            return old.clone();
        }
    };
    match store
        .replace_password_hash(user_id, old, &upgraded, now)
        .await
    {
        Ok(true) => {
            tracing::info!(
                user_id,
                "password hash upgraded to current Argon2id parameters"
            );
            return upgraded;
        }
        Ok(false) => match rechecked_hash(store, hasher, &credentials.user, attempt).await {
            // Another instance's login upgraded it first: the password is still right.
            Ok(Some(current)) => return current,
            // The login's session will not start either: the password it checked is not
            // current.
            _ => tracing::info!(
                user_id,
                "password hash not upgraded: the password changed meanwhile"
            ),
        },
        Err(e) => tracing::warn!(user_id, error = %e, "password hash not upgraded: store error"),
    }
    old.clone()
}

/// The account's hash as it is now, if `attempt` matches it and the account is active: for a
/// compare-and-replace that found another hash than the one checked. A login on another
/// instance may have upgraded the same password's hash meanwhile (then the password is still
/// right), or a reset or change replaced it (then it is not). One more hash, only in that race.
async fn rechecked_hash(
    store: &dyn Store,
    hasher: &PasswordHasher,
    user: &User,
    attempt: &Password,
) -> Result<Option<String>> {
    let Some(current) = store
        .credentials_by_key(&Username::fold(&user.username))
        .await?
    else {
        return Ok(None);
    };
    if current.user.id != user.id || current.user.disabled {
        return Ok(None);
    }
    Ok(
        match hasher
            .verify(attempt, Some(&current.hashed_password))
            .await?
        {
            Verification::Mismatch => None,
            Verification::Match | Verification::MatchNeedsRehash => Some(current.hashed_password),
        },
    )
}

/// Changes a signed-in user's password after checking the current one, and ends every other
/// session of theirs (a thief holding one is out at once) and every link mailed to them.
/// `keep` is the caller's session. The new password must pass `policy` for this user; the
/// login slow-down is cleared.
#[allow(clippy::too_many_arguments)]
pub async fn change_password(
    store: &dyn Store,
    check: PasswordCheck<'_>,
    policy: &PasswordPolicy,
    user: &User,
    current: String,
    new: String,
    keep: Option<i64>,
    now: DateTime<Utc>,
) -> Result<PasswordChanged> {
    let context = PasswordContext {
        username: &user.username,
        email: user.email.as_deref(),
    };
    let new = policy
        .check(new, context)
        .map_err(|msg| Error::validation("new_password", msg))?;
    let attempt = Password::attempt(current.clone());
    let checked = confirm_current_password(store, check, user, current, now).await?;
    let hash = check.hasher.hash(&new).await?;
    let name_hash = throttle::name_hash(&user.username);
    let change = |replaces| PasswordChange {
        user_id: user.id,
        new_hash: &hash,
        // Only over the hash that was checked: a reset that landed while this was hashing wins.
        replaces: Some(replaces),
        reset_link: None,
        keep_session: keep,
        failures_of: &name_hash,
    };
    let mut outcome = store.set_password(change(&checked), now).await?;
    if outcome == PasswordSet::HashChanged
        && let Some(attempt) = &attempt
    {
        // Unless it was a login on another instance upgrading the same password's hash.
        if let Some(current) = rechecked_hash(store, check.hasher, user, attempt).await? {
            outcome = store.set_password(change(&current), now).await?;
        }
    }
    let PasswordSet::Set {
        sessions_ended: ended,
    } = outcome
    else {
        return Err(Error::Conflict(
            "The password was changed meanwhile; sign in again".into(),
        ));
    };
    tracing::info!(
        user_id = user.id,
        ended,
        "password changed; other sessions ended"
    );
    Ok(PasswordChanged {
        sessions_ended: ended,
        hash,
    })
}

/// A password changed: how many other sessions it ended, and the account's new hash (what a
/// session started now must find, `Authenticated::password_hash`).
pub struct PasswordChanged {
    pub sessions_ended: u64,
    pub hash: String,
}

/// Checks the signed-in user's current password, which changing the password or the email
/// address and deleting the account all ask for.
///
/// A wrong one counts against the account like a failed login, and the account's slow-down
/// applies here too: whoever holds a stolen session can guess the password no faster than
/// through the login form. Returns the hash the password matched.
pub async fn confirm_current_password(
    store: &dyn Store,
    check: PasswordCheck<'_>,
    user: &User,
    password: String,
    now: DateTime<Utc>,
) -> Result<String> {
    let wrong = || Error::BadRequest("Current password is incorrect".into());
    let name_hash = throttle::name_hash(&user.username);
    let _turn = check.turn(&name_hash).await?;
    let record = store
        .login_record(&Username::fold(&user.username), &name_hash)
        .await?;
    let on_record = throttle::admit_signed_in(check.throttle, record.failures, now)?;
    let credentials = record.credentials.ok_or_else(wrong)?;
    let matched = match Password::attempt(password) {
        Some(attempt) => !matches!(
            check
                .hasher
                .verify(&attempt, Some(&credentials.hashed_password))
                .await?,
            Verification::Mismatch
        ),
        None => false,
    };
    if !matched {
        throttle::record_failure(store, &user.username, now).await?;
        return Err(wrong());
    }
    if on_record.0 {
        throttle::clear(store, &user.username).await?;
    }
    Ok(credentials.hashed_password)
}
