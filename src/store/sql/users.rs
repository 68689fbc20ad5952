//! SQL of `UserStore`.

macro_rules! impl_user_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::UserStore for $store {
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
                    .fetch_all(&self.pool)
                    .await?
                    .pop()
                    .ok_or(sqlx::Error::RowNotFound)?)
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

            async fn login_record(
                &self,
                username_key: &str,
                name_hash: &str,
            ) -> $crate::store::StoreResult<$crate::store::LoginRecord> {
                // One row whatever matches: both tables are outer-joined to a constant row.
                let sql = "SELECT u.id, u.username, u.email, u.email_verified, u.full_name, u.disabled, \
                           u.is_superuser, u.created_at, u.hashed_password, t.failures, t.last_failure_at \
                           FROM (SELECT 1 AS one) AS one \
                           LEFT JOIN users u ON u.username_key = $1 \
                           LEFT JOIN login_throttle t ON t.name_hash = $2";
                let row: $crate::store::LoginRecordRow = sqlx::query_as(sql)
                    .bind(username_key)
                    .bind(name_hash)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.into())
            }

            async fn set_password(
                &self,
                change: $crate::store::PasswordChange<'_>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::PasswordSet> {
                use $crate::store::PasswordSet;
                let user_id = change.user_id;
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::User(user_id));
                // Returning early drops the transaction, which rolls it back.
                let mut tx = self.begin_write().await?;
                // The user first, as a new link and a deletion take it: the link's row next
                // would otherwise meet them in the opposite order.
                if !Self::lock_row(&mut tx, $crate::store::sql::RowLock::User(user_id)).await? {
                    return Ok(PasswordSet::HashChanged);
                }
                let set = sqlx::query(
                    "UPDATE users SET hashed_password = $1, updated_at = $2 \
                     WHERE id = $3 AND ($4 IS NULL OR hashed_password = $4)",
                )
                .bind(change.new_hash)
                .bind(now)
                .bind(user_id)
                .bind(change.replaces)
                .execute(&mut *tx)
                .await?;
                if set.rows_affected() == 0 {
                    // Nothing was written, so a commit is as good as a rollback; it keeps what
                    // a trigger did meanwhile, which tests use to play another instance
                    // replacing the hash at this very moment.
                    tx.commit().await?;
                    return Ok(PasswordSet::HashChanged);
                }
                if let Some(link) = change.reset_link {
                    let used = sqlx::query(
                        "UPDATE email_tokens SET used_at = $1 \
                         WHERE token_hash = $2 AND purpose = $3 AND user_id = $4 \
                         AND used_at IS NULL AND expires_at > $1",
                    )
                    .bind(now)
                    .bind(link)
                    .bind($crate::store::EmailTokenPurpose::PasswordReset.as_str())
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                    if used.rows_affected() == 0 {
                        return Ok(PasswordSet::LinkUnusable);
                    }
                }
                let sessions_ended = sqlx::query($crate::store::sql::END_SESSIONS_BUT)
                    .bind(user_id)
                    .bind(change.keep_session.unwrap_or(-1))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // Links mailed before stop working: a reset link or an address change waiting
                // in a mailbox someone else reads must not outlive the password.
                sqlx::query($crate::store::sql::VOID_LINKS)
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::store::sql::FORGET_FAILURES)
                    .bind(change.failures_of)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(PasswordSet::Set { sessions_ended })
            }

            async fn replace_password_hash(
                &self,
                user_id: i64,
                old: &str,
                new: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::User(user_id));
                let sql = "UPDATE users SET hashed_password = $1, updated_at = $2 WHERE id = $3 AND hashed_password = $4";
                let done = sqlx::query(sql)
                    .bind(new)
                    .bind(now)
                    .bind(user_id)
                    .bind(old)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_user_disabled(
                &self,
                user_id: i64,
                disabled: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::User(user_id));
                let mut tx = self.begin_write().await?;
                sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
                    .bind(disabled)
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                let mut ended = 0;
                if disabled {
                    // The live ones first, to count them; a login that would start one now
                    // waits for the user row this transaction holds, and then finds it disabled.
                    ended = sqlx::query(
                        "DELETE FROM sessions WHERE user_id = $1 AND expires_at > $2 AND idle_expires_at > $2",
                    )
                    .bind(user_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(ended)
            }
        }
    };
}

pub(in crate::store) use impl_user_store;
