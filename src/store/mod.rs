//! Persistence. The `Store` trait is everything the service asks of a database; PostgreSQL
//! and SQLite implement it (`postgres.rs`, `sqlite.rs`) with the same SQL (`sql.rs`). All SQL
//! of the service lives in this folder.

mod error;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use error::StoreError;

use crate::domain::{Email, NoteText, Username};

pub type StoreResult<T> = Result<T, StoreError>;

/// A user as the API shows it (never with a hash).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A user with the hash needed to check a login.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: User,
    pub hashed_password: String,
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

/// A signed-in session. The token itself is only ever in the client's cookie.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub persistent: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A session joined with its user, as one row.
#[derive(sqlx::FromRow)]
struct SessionUserRow {
    #[sqlx(flatten)]
    session: Session,
    username: String,
    email: Option<String>,
    full_name: Option<String>,
    disabled: bool,
    user_created_at: DateTime<Utc>,
}

impl SessionUserRow {
    fn split(self) -> (Session, User) {
        let user = User {
            id: self.session.user_id,
            username: self.username,
            email: self.email,
            full_name: self.full_name,
            disabled: self.disabled,
            created_at: self.user_created_at,
        };
        (self.session, user)
    }
}

#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the session token, hex.
    pub token_hash: String,
    pub user_id: i64,
    pub persistent: bool,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database answers (for readiness checks).
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the pool at shutdown: waits for connections in use to come back, then closes all.
    async fn close(&self);
    /// Unexpired sessions, for the `gatehouse_active_sessions` metric.
    async fn count_active_sessions(&self, now: DateTime<Utc>) -> StoreResult<i64>;

    /// Inserts a user; `StoreError::Conflict` when the username (case-folded) is taken.
    async fn create_user(&self, user: NewUser, now: DateTime<Utc>) -> StoreResult<User>;
    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<User>>;
    async fn credentials_by_key(&self, username_key: &str) -> StoreResult<Option<UserCredentials>>;
    async fn set_password_hash(
        &self,
        user_id: i64,
        hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// The owner's notes, oldest first.
    async fn list_notes(&self, owner_id: i64) -> StoreResult<Vec<Note>>;
    async fn create_note(
        &self,
        owner_id: i64,
        text: &NoteText,
        completed: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Note>;
    /// `None` when the note does not exist or belongs to someone else.
    async fn note(&self, owner_id: i64, note_id: i64) -> StoreResult<Option<Note>>;
    async fn update_note(
        &self,
        owner_id: i64,
        note_id: i64,
        patch: NotePatch,
    ) -> StoreResult<Option<Note>>;
    /// Whether a note of the owner was deleted.
    async fn delete_note(&self, owner_id: i64, note_id: i64) -> StoreResult<bool>;

    async fn create_session(&self, session: NewSession) -> StoreResult<Session>;
    /// The unexpired session with this token hash, and its user.
    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Session, User)>>;
    async fn touch_session(&self, session_id: i64, now: DateTime<Utc>) -> StoreResult<()>;
    /// Ends a session; whether one existed.
    async fn delete_session(&self, token_hash: &str) -> StoreResult<bool>;
}

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    /// How long a request waits for a connection before the service answers 503.
    pub acquire_timeout: Duration,
}

/// Opens the database named by the URL's scheme (`postgres://`, `postgresql://` or
/// `sqlite:`) and runs its pending migrations.
pub async fn connect(options: &ConnectOptions) -> anyhow::Result<Arc<dyn Store>> {
    let url = options.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(options).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(options).await?))
    } else {
        anyhow::bail!(
            "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got {:?})",
            redact_url(url)
        )
    }
}

/// The URL with its password replaced, for messages and logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable URL>".into(),
    }
}
