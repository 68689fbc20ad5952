//! Persistence. The store traits are everything the service asks of a database, one per area;
//! PostgreSQL and SQLite implement them (`postgres.rs`, `sqlite.rs`) with the same SQL
//! (`sql/`). All SQL of the service lives in this folder.

mod error;
mod lost_connections;
mod model;
mod postgres;
mod session_cache;
mod sql;
mod sqlite;
pub mod tutorial;
mod warm_pool;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use error::StoreError;
pub use model::*;
pub use session_cache::SessionCacheStats;

use crate::domain::NoteText;

pub type StoreResult<T> = Result<T, StoreError>;

/// The whole store: the areas below, plus what concerns the database itself.
#[async_trait]
pub trait Store:
    UserStore
    + NoteStore
    + SessionStore
    + EventStore
    + ProfileStore
    + AdminStore
    + ThrottleStore
    + HousekeepingStore
    + Send
    + Sync
    + 'static
{
    /// Answers when the database answers (for readiness checks).
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the pool at shutdown: waits for connections in use to come back, then closes all.
    async fn close(&self);
    /// Unexpired sessions, for the `gatehouse_active_sessions` metric.
    async fn count_active_sessions(&self, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Lookups answered from memory and from the database, for `/metrics`.
    fn session_cache_stats(&self) -> SessionCacheStats;
    /// The same database and session cache through connections of its own, at most
    /// `max_connections`, of which it keeps up to `min_connections` open (no more than this
    /// store keeps), for the async runtime `runtime` (`http::password_lane`): that runtime
    /// opens them and wakes for their answers. A PostgreSQL connection reports its socket's
    /// readiness through the runtime that opened it, so with one pool for two runtimes, which
    /// one woke for a query's answer would depend on which request opened the connection. The
    /// database sees them named after `role` (PostgreSQL's `application_name`). SQLite's
    /// connections are threads of their own, ready for any runtime: there it is this store.
    fn with_own_connections(
        self: Arc<Self>,
        runtime: &tokio::runtime::Handle,
        role: &str,
        max_connections: u32,
        min_connections: u32,
    ) -> Arc<dyn Store>;
}

#[async_trait]
pub trait UserStore {
    /// Inserts a user; `StoreError::Conflict` when the username (case-folded) is taken.
    async fn create_user(&self, user: NewUser, now: DateTime<Utc>) -> StoreResult<User>;
    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<User>>;
    async fn credentials_by_key(&self, username_key: &str) -> StoreResult<Option<UserCredentials>>;
    /// Everything a login reads before it checks the password: the account with this key and
    /// the failures counted against this name hash (see `ThrottleStore`), in one query.
    async fn login_record(&self, username_key: &str, name_hash: &str) -> StoreResult<LoginRecord>;
    /// Sets a new password hash, ends the user's sessions but the one kept, forgets their
    /// failed logins, uses the reset link if there is one and voids every other link mailed
    /// to them, all in one transaction: a password that changed while a session stayed would
    /// leave whoever stole that session signed in, and a link used without the change would
    /// be lost. Nothing changes unless all of it does.
    async fn set_password(
        &self,
        change: PasswordChange<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<PasswordSet>;
    /// Replaces the password hash only if it is still `old`, and nothing else: a login's
    /// rehash of the same password must not undo a change or reset that landed while it was
    /// hashing. Whether it was replaced.
    async fn replace_password_hash(
        &self,
        user_id: i64,
        old: &str,
        new: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Disables or enables a user; disabling ends all of their sessions in the same step.
    /// How many of them were live.
    async fn set_user_disabled(
        &self,
        user_id: i64,
        disabled: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
}

#[async_trait]
pub trait NoteStore {
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

#[async_trait]
pub trait SessionStore {
    /// Starts a session, with its first refresh token and its audit event if it has them,
    /// in one transaction (one commit). `None`, and nothing written, when the account is gone,
    /// disabled, or no longer has `checked_password_hash`.
    async fn create_session(&self, session: NewSession) -> StoreResult<Option<Session>>;
    /// The live browser session with this cookie-token hash, and its user.
    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(LiveSession, User)>>;
    /// The live session with this id, and its user (for access tokens).
    async fn session_with_user(
        &self,
        session_id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(LiveSession, User)>>;
    /// Records use: `last_used_at` and the pushed-forward idle deadline.
    async fn touch_session(
        &self,
        session_id: i64,
        now: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The user's live sessions, newest first.
    async fn list_sessions(&self, user_id: i64, now: DateTime<Utc>) -> StoreResult<Vec<Session>>;
    /// Ends the browser session with this cookie-token hash; whether one existed.
    async fn delete_session_by_token_hash(&self, token_hash: &str) -> StoreResult<bool>;
    /// Ends one session of a user; whether it existed (and was theirs).
    async fn delete_session(&self, user_id: i64, session_id: i64) -> StoreResult<bool>;
    /// Ends all of a user's sessions but `keep`; how many ended.
    async fn delete_other_sessions(&self, user_id: i64, keep: Option<i64>) -> StoreResult<u64>;
    /// Uses a refresh token once, atomically: rotates it to `new_hash`, or detects reuse
    /// and ends its family.
    async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        new_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Rotation>;
}

/// The user's profile (email address, name) and the single-use links sent by email
/// (password reset, email verification) that prove an address.
#[async_trait]
pub trait ProfileStore {
    async fn user_by_id(&self, user_id: i64) -> StoreResult<Option<User>>;
    /// Users whose address is `email` (compared case-insensitively).
    async fn users_by_email(&self, email: &str) -> StoreResult<Vec<User>>;
    /// Stores a new token; older unused tokens of the same purpose for the user stop working.
    async fn create_email_token(&self, token: NewEmailToken) -> StoreResult<()>;
    /// The user a live (unused, unexpired) token belongs to, without using it.
    async fn email_token_owner(
        &self,
        token_hash: &str,
        purpose: EmailTokenPurpose,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>>;
    /// Uses a verification link once, makes the address it was sent to the user's, verified,
    /// and voids the links mailed to them before, in one transaction; the user, or `None`
    /// (nothing changed) if the link is unknown, used, superseded or expired.
    async fn confirm_email(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>>;
    async fn set_full_name(
        &self,
        user_id: i64,
        full_name: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// What administrators (the console, the `/admin/` API, the command line) and
/// `gatehouse import` need beyond the other areas.
#[async_trait]
pub trait AdminStore {
    /// One page of the users whose name, email or full name contains `query` (ignoring case),
    /// by id; and how many match in all.
    async fn search_users(&self, query: &str, limit: i64, offset: i64) -> StoreResult<UserPage>;
    /// Grants or withdraws superuser rights; whether the user exists.
    async fn set_superuser(
        &self,
        user_id: i64,
        is_superuser: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Deletes a user with their notes, sessions and tokens; events keep their rows with the
    /// user cleared. Whether the user existed.
    async fn delete_user(&self, user_id: i64) -> StoreResult<bool>;
    /// Creates a user from row `source_id` of the tutorial's `users`, unless an earlier run did.
    async fn import_user(
        &self,
        source_id: i64,
        user: NewUser,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportOutcome>;
    /// Creates a note from row `source_id` of the tutorial's `notes`, unless an earlier run did.
    async fn import_note(
        &self,
        source_id: i64,
        owner_id: i64,
        text: &NoteText,
        completed: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportOutcome>;
}

/// A `LIKE` pattern matching values that contain `query` (case-folded), wildcards escaped.
pub(crate) fn contains_pattern(query: &str) -> String {
    let folded = crate::domain::Username::fold(query.trim());
    let mut pattern = String::with_capacity(folded.len() + 2);
    pattern.push('%');
    for c in folded.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[async_trait]
pub trait EventStore {
    async fn record_event(&self, event: NewEvent) -> StoreResult<()>;
    /// A user's most recent events, newest first.
    async fn recent_events(&self, user_id: i64, limit: i64) -> StoreResult<Vec<Event>>;
}

/// Deleting what no request can use any more (`crate::housekeeping`), a batch at a time, so
/// that no statement holds its locks for long on a large table (SQLite has one writer).
#[async_trait]
pub trait HousekeepingStore {
    /// Looks at the `batch` sessions after id `after` and deletes up to `batch` refresh tokens
    /// of those that have ended; once none is left, those sessions.
    async fn delete_ended_sessions(
        &self,
        after: i64,
        batch: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<SweepStep>;
    /// Looks at the `batch` emailed-link tokens after id `after` and deletes those expired.
    async fn delete_expired_email_tokens(
        &self,
        after: i64,
        batch: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<SweepStep>;
    /// Looks at the `batch` audit events after id `after` and deletes those recorded before
    /// `before`. Ids follow time, but not exactly (instances' clocks differ, and one may be
    /// wrong), so the walk goes on past a newer event and ends at the first batch with none
    /// old enough, without reading the rest of the table.
    async fn delete_events_before(
        &self,
        after: i64,
        batch: i64,
        before: DateTime<Utc>,
    ) -> StoreResult<SweepStep>;
    /// Deletes up to `batch` failure counts below `locked_at` whose last failure came before
    /// `before`; how many. A count that locks its account stays.
    async fn delete_stale_login_failures(
        &self,
        before: DateTime<Utc>,
        locked_at: i32,
        batch: i64,
    ) -> StoreResult<u64>;
}

/// Consecutive failed logins per typed account name (a SHA-256 hex of the folded name), kept
/// in the database so the slow-down holds across restarts and instances. A login reads them
/// with its account (`UserStore::login_record`).
#[async_trait]
pub trait ThrottleStore {
    /// Counts one more failure, atomically; returns the new count.
    async fn add_login_failure(
        &self,
        name_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<LoginFailures>;
    /// Forgets the failures (a successful login, a password change or reset).
    async fn clear_login_failures(&self, name_hash: &str) -> StoreResult<()>;
}

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    /// How long a request waits for a connection before the service answers 503.
    pub acquire_timeout: Duration,
    /// How many live sessions to keep in memory (0: read every session from the database).
    pub session_cache_entries: usize,
    /// PostgreSQL connections to open at start and keep open while idle, so that requests
    /// do not wait for one to open (0 for a command that runs once). SQLite opens a file and
    /// needs none.
    pub min_connections: u32,
    pub migrations: Migrations,
}

impl ConnectOptions {
    /// For a command that runs for a moment: nothing to cache, no connections to keep ready,
    /// and migrations for a new database only.
    pub fn for_command(config: &crate::config::Config) -> Self {
        Self {
            url: config.database_url.clone(),
            acquire_timeout: config.db_acquire_timeout,
            session_cache_entries: 0,
            min_connections: 0,
            migrations: Migrations::OnlyToANewDatabase,
        }
    }
}

/// What opening the database does with the migrations it has not had yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Applies them (`gatehouse serve`, `gatehouse migrate`).
    Apply,
    /// Applies them to a new database only, and refuses one that has some but not all. The
    /// other commands: a newer binary's `gatehouse user list` must not migrate a database
    /// that older servers still use, under them (some migrations hold a table's lock for
    /// seconds).
    OnlyToANewDatabase,
}

/// Applies `migrator`'s pending migrations to `pool` as `rule` allows.
macro_rules! run_migrations {
    ($pool:expr, $migrator:expr, $rule:expr, $backend:literal) => {{
        let migrator = $migrator;
        if $rule == $crate::store::Migrations::OnlyToANewDatabase {
            let applied: Vec<i64> =
                match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all($pool)
                    .await
                {
                    Ok(applied) => applied,
                    // No record of migrations at all: a new database.
                    Err(e) if $crate::store::is_missing_table(&e) => Vec::new(),
                    Err(e) => return Err(e).context("reading which migrations the database has"),
                };
            let pending = migrator
                .iter()
                .filter(|m| !applied.contains(&m.version))
                .count();
            if !applied.is_empty() && pending > 0 {
                anyhow::bail!(
                    "the database lacks {pending} migration(s) of this version of Gatehouse; run `gatehouse migrate` first (servers of the older version keep working on the older schema until then)"
                );
            }
        }
        migrator
            .run($pool)
            .await
            .context(concat!("running ", $backend, " migrations"))?;
    }};
}
pub(crate) use run_migrations;

/// Whether `error` says a table does not exist (SQLite: "no such table"; PostgreSQL: 42P01).
pub(crate) fn is_missing_table(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        e.code().as_deref() == Some("42P01") || e.message().starts_with("no such table")
    })
}

/// The most connections a PostgreSQL store opens (besides those of `with_own_connections`).
pub const MAX_CONNECTIONS: u32 = 16;

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

/// Refuses a PostgreSQL URL with `sslpassword`: the driver does not support it, and logs the
/// parameters it ignores with their values. `setting` names where the URL came from.
pub(crate) fn refuse_sslpassword(url: &str, setting: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).map_err(|_| anyhow::anyhow!("{setting} is not a URL"))?;
    if parsed.query_pairs().any(|(key, _)| key == "sslpassword") {
        anyhow::bail!(
            "{setting}: sslpassword is not supported; use a client key without a passphrase (sslkey)"
        );
    }
    Ok(())
}

/// The URL with its password replaced, for messages and logs: the one before the host, and
/// those of the query (`?password=`, which the driver reads as libpq does; `?sslpassword=`,
/// which it does not support, and `refuse_sslpassword` refuses before it can log it).
pub fn redact_url(raw: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(raw) else {
        return "<unparseable URL>".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("redacted"));
    }
    let secret = |key: &str| matches!(key, "password" | "sslpassword");
    if parsed.query_pairs().any(|(key, _)| secret(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret(&key) {
                    "redacted".into()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn every_password_of_a_database_url_is_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db.example/gatehouse"),
            "postgres://app:redacted@db.example/gatehouse"
        );
        let query = redact_url(
            "postgres://db.example/gatehouse?user=app&password=s3cret&sslpassword=k3y&sslmode=require",
        );
        assert_eq!(
            query,
            "postgres://db.example/gatehouse?user=app&password=redacted&sslpassword=redacted&sslmode=require"
        );
        assert_eq!(
            redact_url("sqlite://data/gatehouse.db?mode=rwc"),
            "sqlite://data/gatehouse.db?mode=rwc"
        );
        assert_eq!(redact_url("not a url"), "<unparseable URL>");
    }
}
