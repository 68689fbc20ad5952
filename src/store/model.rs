//! The rows the store reads and writes.

use chrono::{DateTime, Utc};

use crate::domain::{Email, NoteText, Username};

/// A user as the API shows it (never with a hash).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    /// Whether `email` has been proven by a link sent to it.
    pub email_verified: bool,
    pub full_name: Option<String>,
    pub disabled: bool,
    /// May use the admin console and the `/admin/` API.
    pub is_superuser: bool,
    pub created_at: DateTime<Utc>,
}

/// A user with the hash needed to check a login.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: User,
    pub hashed_password: String,
}

/// What a login reads before it checks the password, in one query: the account the typed
/// name belongs to and the failed attempts counted against the name, each if there are any.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub credentials: Option<UserCredentials>,
    pub failures: Option<LoginFailures>,
}

/// A `LoginRecord` as one row of two outer joins: every column is null where nothing matched.
#[derive(sqlx::FromRow)]
pub(super) struct LoginRecordRow {
    id: Option<i64>,
    username: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    full_name: Option<String>,
    disabled: Option<bool>,
    is_superuser: Option<bool>,
    created_at: Option<DateTime<Utc>>,
    hashed_password: Option<String>,
    failures: Option<i32>,
    last_failure_at: Option<DateTime<Utc>>,
}

impl From<LoginRecordRow> for LoginRecord {
    fn from(row: LoginRecordRow) -> Self {
        // A table's NOT NULL columns are null only where its join matched nothing.
        let credentials = match (
            row.id,
            row.username,
            row.hashed_password,
            row.email_verified,
            row.disabled,
            row.is_superuser,
            row.created_at,
        ) {
            (
                Some(id),
                Some(username),
                Some(hashed_password),
                Some(email_verified),
                Some(disabled),
                Some(is_superuser),
                Some(created_at),
            ) => Some(UserCredentials {
                user: User {
                    id,
                    username,
                    email: row.email,
                    email_verified,
                    full_name: row.full_name,
                    disabled,
                    is_superuser,
                    created_at,
                },
                hashed_password,
            }),
            _ => None,
        };
        let failures = match (row.failures, row.last_failure_at) {
            (Some(failures), Some(last_failure_at)) => Some(LoginFailures {
                failures,
                last_failure_at,
            }),
            _ => None,
        };
        Self {
            credentials,
            failures,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub email: Option<Email>,
    pub full_name: Option<String>,
    pub hashed_password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Note {
    pub id: i64,
    pub owner_id: i64,
    pub text: String,
    pub completed: bool,
    pub created_at: DateTime<Utc>,
}

/// A partial update of a note; `None` leaves the field as it is.
#[derive(Debug, Clone, Default)]
pub struct NotePatch {
    pub text: Option<NoteText>,
    pub completed: Option<bool>,
}

/// What a session is for: a browser cookie, or an API login with refresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Browser,
    Api,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Api => "api",
        }
    }
}

/// A signed-in session. Its secret (cookie or refresh token) is only ever with the client.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    /// `browser` or `api`.
    pub kind: String,
    pub persistent: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
}

/// What a signed-in request needs of its session: which one it is and how to keep it alive.
/// Read on every signed-in request, so it leaves out what only the session list shows.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveSession {
    pub id: i64,
    pub user_id: i64,
    /// `browser` or `api`.
    pub kind: String,
    pub persistent: bool,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub kind: SessionKind,
    /// SHA-256 of the cookie token, hex; `None` for API sessions.
    pub token_hash: Option<String>,
    pub user_id: i64,
    pub persistent: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    /// API sessions: SHA-256 of the first refresh token of the family, hex.
    pub first_refresh_token_hash: Option<String>,
    /// The audit event the session starts with (a login). The session, its first refresh
    /// token and this event are written in one transaction: all of them or none.
    pub event: Option<NewEvent>,
    /// The password hash the login checked: the session starts only if the account still has
    /// it and is active, so a password change, reset or disable that lands while the login
    /// is hashing is not outlived by the session it would start.
    pub checked_password_hash: String,
}

/// A session joined with its user, read as one row.
#[derive(sqlx::FromRow)]
pub(super) struct SessionUserRow {
    #[sqlx(flatten)]
    session: LiveSession,
    username: String,
    email: Option<String>,
    email_verified: bool,
    full_name: Option<String>,
    disabled: bool,
    is_superuser: bool,
    user_created_at: DateTime<Utc>,
}

impl SessionUserRow {
    pub(super) fn split(self) -> (LiveSession, User) {
        let user = User {
            id: self.session.user_id,
            username: self.username,
            email: self.email,
            email_verified: self.email_verified,
            full_name: self.full_name,
            disabled: self.disabled,
            is_superuser: self.is_superuser,
            created_at: self.user_created_at,
        };
        (self.session, user)
    }
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: it is now used, and the new hash is the family's next token.
    Rotated(Box<(LiveSession, User)>),
    /// The token had been used before: the whole family (session) has been ended.
    Reused { session_id: i64, user_id: i64 },
    /// Unknown token, or its session has expired.
    Invalid,
}

/// An entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub user_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One batch of a walk through a table by id (`HousekeepingStore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepStep {
    pub deleted: u64,
    /// The id after which the next step starts; `None` once there is nothing more to look at.
    pub next: Option<i64>,
}

/// Consecutive failed logins for one typed account name (see `ThrottleStore`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct LoginFailures {
    pub failures: i32,
    pub last_failure_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    pub user_id: Option<i64>,
    pub actor_id: Option<i64>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What an email token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTokenPurpose {
    PasswordReset,
    VerifyEmail,
}

impl EmailTokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::VerifyEmail => "verify_email",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewEmailToken {
    pub user_id: i64,
    pub purpose: EmailTokenPurpose,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// For verification: the address the link proves.
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A new password hash and what changes with it (`UserStore::set_password`).
#[derive(Debug, Clone, Copy)]
pub struct PasswordChange<'a> {
    pub user_id: i64,
    pub new_hash: &'a str,
    /// Replace only this hash (the one a password change checked); `None` replaces any.
    pub replaces: Option<&'a str>,
    /// The hash of the single-use reset link that allows the change, used in the same step.
    pub reset_link: Option<&'a str>,
    /// The session that stays signed in (the one changing its password); every other ends.
    pub keep_session: Option<i64>,
    /// The name hash whose failed logins are forgotten (`ThrottleStore`): a new password
    /// opens an account slowed down or locked by them.
    pub failures_of: &'a str,
}

/// What `UserStore::set_password` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSet {
    /// The hash is set and this many sessions ended.
    Set { sessions_ended: u64 },
    /// Nothing changed: the account is gone, or no longer has the hash `replaces` named.
    HashChanged,
    /// Nothing changed: the reset link is unknown, used, superseded, expired or another's.
    LinkUnusable,
}

/// One page of a user search, and how many users match in all.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<User>,
    pub total: i64,
}

/// What became of one row of the tutorial's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Created, with this local id.
    Imported(i64),
    /// An earlier run imported it.
    AlreadyImported,
    /// A local user already has that name (compared ignoring case).
    Conflict,
}
