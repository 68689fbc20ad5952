//! The SQL both backends share. PostgreSQL and SQLite accept the same statements here
//! (`$n` placeholders, `RETURNING`, transactions), so macros write the store traits'
//! implementations for each typed pool, one file per area; backend-specific work
//! (connecting, pragmas, and starting a session, which PostgreSQL does in one statement)
//! stays in `postgres.rs` and `sqlite.rs`.
//!
//! sqlx only takes `&'static str` SQL (audited, never built from input), so the column lists
//! are macros that `concat!` can splice into literals.
//!
//! On SQLite, a write outside a transaction that returns its row (`RETURNING`) is read with
//! `fetch_all`, never `fetch_one` or `fetch_optional`: those stop a SQLite statement after its
//! first row, and a statement stopped early commits when it is reset, where SQLite's WAL hook
//! does not report the commit. This process's session cache would then take its own commit
//! for another process's and empty itself (`session_cache::own_commits`).
//!
//! On PostgreSQL, statements run through `WarmPool` (`warm_pool.rs`), which reads each
//! statement's results whole before handing on the first row, so that the connection is free
//! for the next statement. Every read here collects its rows anyway (`fetch_all`, `fetch_one`,
//! `fetch_optional`), so that costs nothing; a statement that streams a large result row by row
//! (`fetch`) should run on a connection of its own from `WarmPool::sqlx`.

pub(super) mod admin;
mod events;
pub(super) mod housekeeping;
mod notes;
mod profile;
mod sessions;
mod throttle;
mod users;

pub(super) use admin::impl_admin_store;
pub(super) use events::{impl_event_store, insert_event};
pub(super) use housekeeping::impl_housekeeping_store;
pub(super) use notes::impl_note_store;
pub(super) use profile::impl_profile_store;
pub(super) use sessions::{
    bind_new_session, impl_session_store, insert_refresh_token, insert_session,
};
pub(super) use throttle::impl_throttle_store;
pub(super) use users::impl_user_store;

/// A row a write transaction locks before it changes what hangs off it (`lock_row` on each
/// backend), so that concurrent writers queue there instead of meeting in opposite orders
/// further on: on PostgreSQL that is a deadlock, and one of them fails.
pub(in crate::store) enum RowLock {
    /// A session, before its refresh-token family changes.
    Session(i64),
    /// A user, before their emailed-link tokens change.
    User(i64),
}

/// Ends the sessions of user `$1` but `$2` (-1, which no session has, keeps none).
pub(in crate::store) const END_SESSIONS_BUT: &str =
    "DELETE FROM sessions WHERE user_id = $1 AND id <> $2";

/// Voids every unused link mailed to user `$2`, at `$1`: expired ones too, as another
/// instance whose clock runs behind may still take one. (It may meet housekeeping deleting
/// expired links; a deadlock between them fails one of the two, to be retried.)
pub(in crate::store) const VOID_LINKS: &str =
    "UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL";

/// Forgets the failed logins counted against name hash `$1` (`ThrottleStore`).
pub(in crate::store) const FORGET_FAILURES: &str =
    "DELETE FROM login_throttle WHERE name_hash = $1";

/// Columns of `User`.
macro_rules! user_columns {
    () => {
        "id, username, email, email_verified, full_name, disabled, is_superuser, created_at"
    };
}

/// Columns of `Session`.
macro_rules! session_columns {
    () => {
        "id, user_id, kind, persistent, ip, user_agent, created_at, last_used_at, expires_at, idle_expires_at"
    };
}

/// A session joined with its user, as `SessionUserRow` reads it.
macro_rules! session_user_select {
    () => {
        "SELECT s.id, s.user_id, s.kind, s.persistent, s.last_used_at, s.expires_at, s.idle_expires_at, u.username, u.email, u.email_verified, u.full_name, u.disabled, u.is_superuser, \
         u.created_at AS user_created_at FROM sessions s JOIN users u ON u.id = s.user_id"
    };
}

/// Columns of `Note`.
macro_rules! note_columns {
    () => {
        "id, owner_id, text, completed, created_at"
    };
}

/// Columns of `Event`.
macro_rules! event_columns {
    () => {
        "id, kind, user_id, actor_id, ip, user_agent, detail, created_at"
    };
}

/// Implements every store trait for a backend type with a `pool` field.
macro_rules! impl_store {
    ($store:ty) => {
        $crate::store::sql::impl_user_store!($store);
        $crate::store::sql::impl_note_store!($store);
        $crate::store::sql::impl_session_store!($store);
        $crate::store::sql::impl_event_store!($store);
        $crate::store::sql::impl_throttle_store!($store);
        $crate::store::sql::impl_admin_store!($store);
        $crate::store::sql::impl_profile_store!($store);
        $crate::store::sql::impl_housekeeping_store!($store);

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.stop_background_work();
                self.pool.close().await;
            }

            fn session_cache_stats(&self) -> $crate::store::SessionCacheStats {
                self.cache.stats()
            }

            fn with_own_connections(
                self: std::sync::Arc<Self>,
                runtime: &tokio::runtime::Handle,
                role: &str,
                max_connections: u32,
                min_connections: u32,
            ) -> std::sync::Arc<dyn $crate::store::Store> {
                self.own_connections(runtime, role, max_connections, min_connections)
            }

            async fn count_active_sessions(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<i64> {
                let sql =
                    "SELECT COUNT(*) FROM sessions WHERE expires_at > $1 AND idle_expires_at > $1";
                Ok(sqlx::query_scalar(sql)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?)
            }
        }
    };
}

pub(super) use {
    event_columns, impl_store, note_columns, session_columns, session_user_select, user_columns,
};
