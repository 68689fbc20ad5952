//! SQL of `SessionStore`: sessions and their refresh-token families.

macro_rules! impl_session_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn create_session(
                &self,
                session: $crate::store::NewSession,
            ) -> $crate::store::StoreResult<Option<$crate::store::Session>> {
                // Each backend writes it its own way (`postgres.rs`, `sqlite.rs`).
                self.start_session(session).await
            }

            async fn session_by_token_hash(
                &self,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<($crate::store::LiveSession, $crate::store::User)>> {
                use $crate::store::session_cache::Lookup;
                let ticket = match self.cache.by_token(token_hash, now) {
                    Lookup::Hit(found) => return Ok(Some(*found)),
                    Lookup::Miss(ticket) => ticket,
                };
                // One indexed lookup: this runs on every signed-in page the cache misses.
                let sql = concat!(
                    $crate::store::sql::session_user_select!(),
                    " WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.idle_expires_at > $2"
                );
                let row: Option<$crate::store::SessionUserRow> =
                    sqlx::query_as(sql).bind(token_hash).bind(now).fetch_optional(&self.pool).await?;
                let found = row.map($crate::store::SessionUserRow::split);
                if let Some(found) = &found {
                    self.cache.store(ticket, Some(token_hash), found);
                }
                Ok(found)
            }

            async fn session_with_user(
                &self,
                session_id: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<($crate::store::LiveSession, $crate::store::User)>> {
                use $crate::store::session_cache::Lookup;
                let ticket = match self.cache.by_id(session_id, now) {
                    Lookup::Hit(found) => return Ok(Some(*found)),
                    Lookup::Miss(ticket) => ticket,
                };
                // One primary-key lookup: this runs on every bearer request the cache misses.
                let sql = concat!(
                    $crate::store::sql::session_user_select!(),
                    " WHERE s.id = $1 AND s.expires_at > $2 AND s.idle_expires_at > $2"
                );
                let row: Option<$crate::store::SessionUserRow> =
                    sqlx::query_as(sql).bind(session_id).bind(now).fetch_optional(&self.pool).await?;
                let found = row.map($crate::store::SessionUserRow::split);
                if let Some(found) = &found {
                    self.cache.store(ticket, None, found);
                }
                Ok(found)
            }

            async fn touch_session(
                &self,
                session_id: i64,
                now: chrono::DateTime<chrono::Utc>,
                idle_expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE sessions SET last_used_at = $1, idle_expires_at = $2 WHERE id = $3")
                    .bind(now)
                    .bind(idle_expires_at)
                    .bind(session_id)
                    .execute(&self.pool)
                    .await?;
                self.cache.touched(session_id, now, idle_expires_at);
                Ok(())
            }

            async fn list_sessions(
                &self,
                user_id: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Session>> {
                let sql = concat!(
                    "SELECT ",
                    $crate::store::sql::session_columns!(),
                    " FROM sessions WHERE user_id = $1 AND expires_at > $2 AND idle_expires_at > $2 ORDER BY id DESC"
                );
                Ok(sqlx::query_as(sql).bind(user_id).bind(now).fetch_all(&self.pool).await?)
            }

            async fn delete_session_by_token_hash(&self, token_hash: &str) -> $crate::store::StoreResult<bool> {
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::Token(token_hash));
                let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_session(&self, user_id: i64, session_id: i64) -> $crate::store::StoreResult<bool> {
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::Session(session_id));
                let done = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
                    .bind(session_id)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_other_sessions(&self, user_id: i64, keep: Option<i64>) -> $crate::store::StoreResult<u64> {
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::User(user_id));
                let done = sqlx::query($crate::store::sql::END_SESSIONS_BUT)
                    .bind(user_id)
                    .bind(keep.unwrap_or(-1))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn rotate_refresh_token(
                &self,
                presented_hash: &str,
                new_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::Rotation> {
                use $crate::store::Rotation;
                let mut tx = self.begin_write().await?;
                let family: Option<i64> =
                    sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE token_hash = $1")
                        .bind(presented_hash)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(session_id) = family else {
                    return Ok(Rotation::Invalid);
                };
                // Every change to a family takes its session's lock before any token's, as a
                // logout's delete does. Concurrent uses of one token then queue here, and
                // none waits on a token another holds while holding the session: that order
                // ended in a deadlock on PostgreSQL (one use failed) when a reuse's cascade
                // met a use that had marked the token.
                if !Self::lock_row(&mut tx, $crate::store::sql::RowLock::Session(session_id)).await? {
                    return Ok(Rotation::Invalid);
                }
                // Read after the lock, so that it sees what the use before this one wrote.
                let found: Option<(i64, Option<chrono::DateTime<chrono::Utc>>, i64)> = sqlx::query_as(
                    "SELECT r.id, r.used_at, s.user_id FROM refresh_tokens r \
                     JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1",
                )
                .bind(presented_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((token_id, used_at, user_id)) = found else {
                    return Ok(Rotation::Invalid);
                };
                if used_at.is_some() {
                    let _forget = self.cache.forget_after($crate::store::session_cache::Change::Session(session_id));
                    sqlx::query("DELETE FROM sessions WHERE id = $1").bind(session_id).execute(&mut *tx).await?;
                    tx.commit().await?;
                    return Ok(Rotation::Reused { session_id, user_id });
                }
                sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(token_id)
                    .execute(&mut *tx)
                    .await?;
                let sql = concat!(
                    $crate::store::sql::session_user_select!(),
                    " WHERE s.id = $1 AND s.expires_at > $2 AND s.idle_expires_at > $2"
                );
                let row: Option<$crate::store::SessionUserRow> =
                    sqlx::query_as(sql).bind(session_id).bind(now).fetch_optional(&mut *tx).await?;
                let Some((session, user)) = row.map($crate::store::SessionUserRow::split) else {
                    tx.commit().await?;
                    return Ok(Rotation::Invalid);
                };
                $crate::store::sql::insert_refresh_token!(&mut *tx, session_id, new_hash, now).await?;
                tx.commit().await?;
                Ok(Rotation::Rotated(Box::new((session, user))))
            }
        }
    };
}

/// The insert that starts a session, returning it, or nothing when the account is gone,
/// disabled or no longer has the checked password hash: `$1` to `$10` are bound by
/// `bind_new_session!`. `$lock` keeps the account's row as it was read until the commit
/// (PostgreSQL's `FOR SHARE`: a password change waits for the login, then ends its session);
/// on SQLite the write transaction already does. Each backend's `start_session` adds the first
/// refresh token and the login event.
macro_rules! insert_session {
    ($lock:literal) => {
        concat!(
            "INSERT INTO sessions (kind, token_hash, user_id, persistent, ip, user_agent, created_at, last_used_at, expires_at, idle_expires_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $7, $8, $9 FROM users \
             WHERE id = $3 AND NOT disabled AND hashed_password = $10",
            $lock,
            " RETURNING ",
            $crate::store::sql::session_columns!()
        )
    };
}

/// Binds `$1` to `$10` of `insert_session!` from a `NewSession`.
macro_rules! bind_new_session {
    ($query:expr, $session:expr) => {{
        let session: &$crate::store::NewSession = $session;
        $query
            .bind(session.kind.as_str())
            .bind(session.token_hash.as_deref())
            .bind(session.user_id)
            .bind(session.persistent)
            .bind(session.ip.as_deref())
            .bind(session.user_agent.as_deref())
            .bind(session.created_at)
            .bind(session.expires_at)
            .bind(session.idle_expires_at)
            .bind(&session.checked_password_hash)
    }};
}

/// The statement that adds a token to a session's refresh-token family, in the transaction
/// that starts the session (SQLite) or rotates its token; a future to await.
macro_rules! insert_refresh_token {
    ($executor:expr, $session_id:expr, $token_hash:expr, $created_at:expr) => {
        sqlx::query(
            "INSERT INTO refresh_tokens (session_id, token_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind($session_id)
        .bind($token_hash)
        .bind($created_at)
        .execute($executor)
    };
}

pub(in crate::store) use {
    bind_new_session, impl_session_store, insert_refresh_token, insert_session,
};
