//! The audit trail: what happened to an account, when, from which address and browser. Never
//! a secret: no password, token, or typed username (which may be a mistyped password).
//!
//! ```ignore
//! audit::record(&state, EventKind::PasswordReset, Some(user.id), &client).await;
//! audit::record_by(&state, EventKind::AdminAction, Some(target.id), admin.id, &client, "disabled").await;
//! ```
//!
//! Recording never fails the request: a write that fails is logged and the action stands. A
//! successful login is the exception: its event is written with the session it starts, in
//! one transaction (`login_success_event`), so there is no session without its record.

use crate::auth::login::LoginError;
use crate::auth::sessions::ClientMeta;
use crate::http::AppState;
use crate::metrics::LoginChannel;
use crate::store::{Event, NewEvent, Store, User};

/// The kinds of event, as stored in `events.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Signup,
    LoginSuccess,
    LoginFailure,
    Logout,
    /// One session ended by its owner, or all other sessions.
    SessionEnded,
    RefreshTokenReuse,
    PasswordChanged,
    PasswordResetRequested,
    PasswordReset,
    EmailVerified,
    /// A rate limit or the login slow-down refused a request.
    Throttled,
    /// An administrator acted on the account (`detail` says what, `actor_id` who).
    AdminAction,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::LoginSuccess => "login_success",
            Self::LoginFailure => "login_failure",
            Self::Logout => "logout",
            Self::SessionEnded => "session_ended",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::PasswordChanged => "password_changed",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset => "password_reset",
            Self::EmailVerified => "email_verified",
            Self::Throttled => "throttled",
            Self::AdminAction => "admin_action",
        }
    }

    /// How the account page words a stored kind.
    pub fn describe(kind: &str) -> &'static str {
        match kind {
            "signup" => "Account created",
            "login_success" => "Signed in",
            "login_failure" => "Failed sign-in attempt",
            "logout" => "Signed out",
            "session_ended" => "Session ended",
            "refresh_token_reuse" => "Stolen token detected: session ended",
            "password_changed" => "Password changed",
            "password_reset_requested" => "Password reset requested",
            "password_reset" => "Password reset",
            "email_verified" => "Email address confirmed",
            "throttled" => "Sign-ins slowed down after failed attempts",
            "admin_action" => "Changed by an administrator",
            _ => "Account activity",
        }
    }
}

/// Records an event about `user_id` (if known), from `client`.
pub async fn record(state: &AppState, kind: EventKind, user_id: Option<i64>, client: &ClientMeta) {
    write(state, new_event(state, kind, user_id, None, client, None)).await;
}

/// Like `record`, with a short, secret-free detail.
pub async fn record_detail(
    state: &AppState,
    kind: EventKind,
    user_id: Option<i64>,
    client: &ClientMeta,
    detail: impl Into<String>,
) {
    let detail = Some(detail.into());
    write(state, new_event(state, kind, user_id, None, client, detail)).await;
}

/// An event about `user_id` caused by another user, `actor_id` (an administrator).
pub async fn record_by(
    state: &AppState,
    kind: EventKind,
    user_id: Option<i64>,
    actor_id: i64,
    client: &ClientMeta,
    detail: impl Into<String>,
) {
    let detail = Some(detail.into());
    let event = new_event(state, kind, user_id, Some(actor_id), client, detail);
    write(state, event).await;
}

async fn write(state: &AppState, event: NewEvent) {
    let (kind, user_id) = (event.kind, event.user_id);
    if let Err(err) = state.store.record_event(event).await {
        tracing::warn!(error = %err, kind, user_id, "audit event not recorded");
    }
}

fn new_event(
    state: &AppState,
    kind: EventKind,
    user_id: Option<i64>,
    actor_id: Option<i64>,
    client: &ClientMeta,
    detail: Option<String>,
) -> NewEvent {
    NewEvent {
        kind: kind.as_str(),
        user_id,
        actor_id,
        ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        detail,
        created_at: state.clock.now(),
    }
}

/// A user's most recent events, newest first.
pub async fn recent(
    store: &dyn Store,
    user_id: i64,
    limit: i64,
) -> crate::error::Result<Vec<Event>> {
    Ok(store.recent_events(user_id, limit).await?)
}

/// The event of a successful login through `channel` (`api` or `page`). It is written with
/// the session the login starts (`NewSession::event`), all or nothing.
pub fn login_success_event(
    state: &AppState,
    user: &User,
    client: &ClientMeta,
    channel: LoginChannel,
) -> NewEvent {
    let detail = Some(channel.as_str().to_owned());
    new_event(
        state,
        EventKind::LoginSuccess,
        Some(user.id),
        None,
        client,
        detail,
    )
}

/// Records a login refused because the account's address is not confirmed yet: the password
/// was right, so the attempt is the account holder's (or someone who knows the password).
pub async fn login_unverified(
    state: &AppState,
    user: &User,
    client: &ClientMeta,
    channel: LoginChannel,
) {
    let detail = format!("{}: address not confirmed", channel.as_str());
    let kind = EventKind::LoginFailure;
    record_detail(state, kind, Some(user.id), client, detail).await;
}

/// Records a refused login through `channel` (`api` or `page`), attributed to the account
/// when the name exists (the client is told nothing of it), and the start of a slow-down or
/// lock-out by the attempt that reached it. Refusals that say nothing about the credentials (a
/// database outage, a throttled attempt) are not recorded here.
pub async fn login_failure(
    state: &AppState,
    refused: &LoginError,
    client: &ClientMeta,
    channel: LoginChannel,
) {
    let (user_id, failures) = match *refused {
        LoginError::BadCredentials { user_id, failures } => (user_id, Some(failures)),
        LoginError::Inactive { user_id } => (Some(user_id), None),
        LoginError::Unchecked(_) => return,
    };
    let kind = EventKind::LoginFailure;
    record_detail(state, kind, user_id, client, channel.as_str()).await;
    let policy = &state.config.abuse.login_throttle;
    // The lock-out first: with both thresholds equal, the account is locked, not slowed down.
    let detail = match failures {
        Some(count) if count == policy.lock_after.min(100) => {
            "failed logins: locked until a password reset"
        }
        Some(count) if count == policy.free_failures => "failed logins: slowed down",
        _ => return,
    };
    record_detail(state, EventKind::Throttled, user_id, client, detail).await;
}
