//! The session lifecycle: starting browser and API sessions, rotating refresh tokens with
//! reuse detection, and keeping sessions alive within their idle and absolute limits.
//! Store access only through the store traits; no HTTP here.

use chrono::{DateTime, Utc};

use super::session::{hash_token, new_token};
use crate::config::{Lifetime, SessionLifetimes};
use crate::error::{Error, Result};
use crate::store::{
    LiveSession, NewEvent, NewSession, Rotation, Session, SessionKind, Store, User, UserCredentials,
};

/// Sessions are touched at most this often, so reads do not all become writes.
const TOUCH_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

/// A user whose password was just checked (a login) or set (a sign-up), with the hash that
/// was in place. A session starts from this only while the account still has that hash and is
/// active: a password change, reset or disable that lands meanwhile wins over the login.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub password_hash: String,
}

impl From<UserCredentials> for Authenticated {
    /// An account whose stored hash the password matched.
    fn from(credentials: UserCredentials) -> Self {
        Self {
            user: credentials.user,
            password_hash: credentials.hashed_password,
        }
    }
}

/// Where a request came from, for the session list and the audit trail.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

fn later(now: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX)
}

fn lifetime(lifetimes: &SessionLifetimes, session: &LiveSession) -> Lifetime {
    match (session.kind.as_str(), session.persistent) {
        ("api", _) => lifetimes.api,
        (_, true) => lifetimes.remembered,
        _ => lifetimes.browser,
    }
}

/// A session of `kind` for the account from `now`, ending by `limits`; the callers fill in
/// what their kind adds.
fn new_session(
    kind: SessionKind,
    limits: Lifetime,
    now: DateTime<Utc>,
    account: &Authenticated,
    client: ClientMeta,
) -> NewSession {
    NewSession {
        kind,
        token_hash: None,
        user_id: account.user.id,
        persistent: false,
        ip: client.ip,
        user_agent: client.user_agent,
        created_at: now,
        expires_at: later(now, limits.absolute),
        idle_expires_at: later(now, limits.idle),
        first_refresh_token_hash: None,
        event: None,
        checked_password_hash: account.password_hash.clone(),
    }
}

/// A session that did not start because the account changed since its password was checked:
/// the password that was typed is no longer the account's, or the account is gone or disabled.
fn account_changed() -> Error {
    Error::Unauthorized(crate::error::AuthFailure::BadCredentials)
}

/// A new browser session; returns the cookie token (the store keeps only its hash). `event`
/// (a login) is recorded with the session, in the same write (all or nothing).
pub async fn start_browser_session(
    store: &dyn Store,
    lifetimes: &SessionLifetimes,
    now: DateTime<Utc>,
    account: &Authenticated,
    remember: bool,
    client: ClientMeta,
    event: Option<NewEvent>,
) -> Result<(String, Session)> {
    let (token, hash) = new_token();
    let limits = if remember {
        lifetimes.remembered
    } else {
        lifetimes.browser
    };
    let session = store
        .create_session(NewSession {
            token_hash: Some(hash),
            persistent: remember,
            event,
            ..new_session(SessionKind::Browser, limits, now, account, client)
        })
        .await?
        .ok_or_else(account_changed)?;
    Ok((token, session))
}

/// A new API session (a refresh-token family); returns it and its first refresh token.
/// `event` (a login) is recorded with the session, in the same write (all or nothing).
pub async fn start_api_session(
    store: &dyn Store,
    lifetimes: &SessionLifetimes,
    now: DateTime<Utc>,
    account: &Authenticated,
    client: ClientMeta,
    event: Option<NewEvent>,
) -> Result<(Session, String)> {
    let (refresh_token, hash) = new_token();
    let session = store
        .create_session(NewSession {
            persistent: true,
            first_refresh_token_hash: Some(hash),
            event,
            ..new_session(SessionKind::Api, lifetimes.api, now, account, client)
        })
        .await?
        .ok_or_else(account_changed)?;
    Ok((session, refresh_token))
}

/// What a presented refresh token led to.
pub enum Refresh {
    /// The next token of the session's family.
    Rotated {
        session: LiveSession,
        user: User,
        refresh_token: String,
    },
    /// The token had been used already: one of its two holders is not the user, so the whole
    /// family is revoked. The client is told only `invalid_refresh_token`; the caller records
    /// the reuse.
    Reused { session_id: i64, user_id: i64 },
}

/// The answer to a refresh token that is unknown, expired or reused.
pub fn invalid_refresh_token() -> Error {
    Error::BadRequest("Invalid refresh token".into())
}

/// Exchanges a refresh token for the next one (RFC 6749 section 6, rotated).
pub async fn refresh(
    store: &dyn Store,
    lifetimes: &SessionLifetimes,
    now: DateTime<Utc>,
    presented: &str,
) -> Result<Refresh> {
    let (next, next_hash) = new_token();
    match store
        .rotate_refresh_token(&hash_token(presented), &next_hash, now)
        .await?
    {
        Rotation::Rotated(rotated) => {
            let (session, user) = *rotated;
            if user.disabled {
                return Err(Error::InactiveUser);
            }
            keep_alive(store, lifetimes, now, &session).await?;
            Ok(Refresh::Rotated {
                session,
                user,
                refresh_token: next,
            })
        }
        Rotation::Reused {
            session_id,
            user_id,
        } => {
            tracing::warn!(
                user_id,
                session_id,
                "refresh token reused: session family revoked"
            );
            Ok(Refresh::Reused {
                session_id,
                user_id,
            })
        }
        Rotation::Invalid => Err(invalid_refresh_token()),
    }
}

/// Pushes the idle deadline forward when the session is used (at most once a minute).
pub async fn keep_alive(
    store: &dyn Store,
    lifetimes: &SessionLifetimes,
    now: DateTime<Utc>,
    session: &LiveSession,
) -> Result<()> {
    if now - session.last_used_at < TOUCH_INTERVAL {
        return Ok(());
    }
    let idle_until = later(now, lifetime(lifetimes, session).idle).min(session.expires_at);
    store.touch_session(session.id, now, idle_until).await?;
    Ok(())
}
