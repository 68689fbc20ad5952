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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database answers (for readiness checks).
    async fn ping(&self) -> StoreResult<()>;

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
