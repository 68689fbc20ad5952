//! The SQL both backends share. PostgreSQL and SQLite accept the same statements here
//! (`$n` placeholders, `RETURNING`), so one macro writes the `Store` implementation for each
//! typed pool; backend-specific work (connecting, pragmas) stays in its own file.

// sqlx only takes `&'static str` SQL (audited, never built from input), so the column lists
// are macros that `concat!` can splice into literals.

/// Columns of `User`.
macro_rules! user_columns {
    () => {
        "id, username, email, full_name, disabled, created_at"
    };
}

/// Columns of `Session`.
macro_rules! session_columns {
    () => {
        "id, user_id, persistent, ip, user_agent, created_at, last_used_at, expires_at"
    };
}

/// Columns of `Note`.
macro_rules! note_columns {
    () => {
        "id, owner_id, text, completed, created_at"
    };
}

macro_rules! impl_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.pool.close().await;
            }

            async fn count_active_sessions(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<i64> {
                Ok(
                    sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE expires_at > $1")
                        .bind(now)
                        .fetch_one(&self.pool)
                        .await?,
                )
            }

            async fn create_user(
                &self,
                user: $crate::store::NewUser,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::User> {
                let sql = concat!(
                    "INSERT INTO users (username, username_key, email, full_name, hashed_password, disabled, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, FALSE, $6, $6) RETURNING ",
                    $crate::store::sql::user_columns!(),
                    ""
                );
                Ok(sqlx::query_as(sql)
                    .bind(user.username.as_str())
                    .bind(user.username.key())
                    .bind(user.email.as_ref().map(|e| e.as_str()))
                    .bind(user.full_name.as_deref())
                    .bind(&user.hashed_password)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn user_by_key(
                &self,
                username_key: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::User>> {
                let sql = concat!(
                    "SELECT ",
                    $crate::store::sql::user_columns!(),
                    " FROM users WHERE username_key = $1"
                );
                Ok(sqlx::query_as(sql).bind(username_key).fetch_optional(&self.pool).await?)
            }

            async fn credentials_by_key(
                &self,
                username_key: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::UserCredentials>> {
                let sql = concat!(
                    "SELECT ",
                    $crate::store::sql::user_columns!(),
                    ", hashed_password FROM users WHERE username_key = $1"
                );
                Ok(sqlx::query_as(sql).bind(username_key).fetch_optional(&self.pool).await?)
            }

            async fn set_password_hash(
                &self,
                user_id: i64,
                hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE users SET hashed_password = $1, updated_at = $2 WHERE id = $3")
                    .bind(hash)
                    .bind(now)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_notes(
                &self,
                owner_id: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Note>> {
                let sql = concat!(
                    "SELECT ",
                    $crate::store::sql::note_columns!(),
                    " FROM notes WHERE owner_id = $1 ORDER BY id"
                );
                Ok(sqlx::query_as(sql).bind(owner_id).fetch_all(&self.pool).await?)
            }

            async fn create_note(
                &self,
                owner_id: i64,
                text: &$crate::domain::NoteText,
                completed: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::Note> {
                let sql = concat!(
                    "INSERT INTO notes (owner_id, text, completed, created_at) VALUES ($1, $2, $3, $4) RETURNING ",
                    $crate::store::sql::note_columns!(),
                    ""
                );
                Ok(sqlx::query_as(sql)
                    .bind(owner_id)
                    .bind(text.as_str())
                    .bind(completed)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn note(
                &self,
                owner_id: i64,
                note_id: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::Note>> {
                let sql = concat!(
                    "SELECT ",
                    $crate::store::sql::note_columns!(),
                    " FROM notes WHERE id = $1 AND owner_id = $2"
                );
                Ok(sqlx::query_as(sql).bind(note_id).bind(owner_id).fetch_optional(&self.pool).await?)
            }

            async fn update_note(
                &self,
                owner_id: i64,
                note_id: i64,
                patch: $crate::store::NotePatch,
            ) -> $crate::store::StoreResult<Option<$crate::store::Note>> {
                // COALESCE keeps a field when the patch leaves it out.
                let sql = concat!(
                    "UPDATE notes SET text = COALESCE($1, text), completed = COALESCE($2, completed) \
                     WHERE id = $3 AND owner_id = $4 RETURNING ",
                    $crate::store::sql::note_columns!(),
                    ""
                );
                Ok(sqlx::query_as(sql)
                    .bind(patch.text.as_ref().map(|t| t.as_str()))
                    .bind(patch.completed)
                    .bind(note_id)
                    .bind(owner_id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn delete_note(&self, owner_id: i64, note_id: i64) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM notes WHERE id = $1 AND owner_id = $2")
                    .bind(note_id)
                    .bind(owner_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_session(
                &self,
                session: $crate::store::NewSession,
            ) -> $crate::store::StoreResult<$crate::store::Session> {
                let sql = concat!(
                    "INSERT INTO sessions (token_hash, user_id, persistent, ip, user_agent, created_at, last_used_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING ",
                    $crate::store::sql::session_columns!()
                );
                Ok(sqlx::query_as(sql)
                    .bind(&session.token_hash)
                    .bind(session.user_id)
                    .bind(session.persistent)
                    .bind(session.ip.as_deref())
                    .bind(session.user_agent.as_deref())
                    .bind(session.created_at)
                    .bind(session.expires_at)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn session_by_token_hash(
                &self,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<($crate::store::Session, $crate::store::User)>> {
                // One indexed lookup: this runs on every signed-in request.
                let sql = "SELECT s.id, s.user_id, s.persistent, s.ip, s.user_agent, s.created_at, s.last_used_at, s.expires_at, \
                     u.username, u.email, u.full_name, u.disabled, u.created_at AS user_created_at \
                     FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2";
                let row: Option<$crate::store::SessionUserRow> = sqlx::query_as(sql)
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map($crate::store::SessionUserRow::split))
            }

            async fn touch_session(
                &self,
                session_id: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(session_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_session(&self, token_hash: &str) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(super) use {impl_store, note_columns, session_columns, user_columns};
