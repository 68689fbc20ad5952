//! SQL of `ProfileStore`: email, name, and the emailed tokens.

macro_rules! impl_profile_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ProfileStore for $store {
            async fn user_by_id(&self, user_id: i64) -> $crate::store::StoreResult<Option<$crate::store::User>> {
                let sql = concat!("SELECT ", $crate::store::sql::user_columns!(), " FROM users WHERE id = $1");
                Ok(sqlx::query_as(sql).bind(user_id).fetch_optional(&self.pool).await?)
            }

            async fn users_by_email(&self, email: &str) -> $crate::store::StoreResult<Vec<$crate::store::User>> {
                let sql = concat!(
                    "SELECT ",
                    $crate::store::sql::user_columns!(),
                    " FROM users WHERE LOWER(email) = LOWER($1) ORDER BY id LIMIT 10"
                );
                Ok(sqlx::query_as(sql).bind(email).fetch_all(&self.pool).await?)
            }

            async fn create_email_token(&self, token: $crate::store::NewEmailToken) -> $crate::store::StoreResult<()> {
                let mut tx = self.begin_write().await?;
                // The user first, as deleting the user does (then its tokens, by cascade): a
                // deletion waits for this or this for it, and two links requested at once
                // queue, so the newer one does supersede the older.
                if !Self::lock_row(&mut tx, $crate::store::sql::RowLock::User(token.user_id)).await? {
                    return Err($crate::store::StoreError::NotFound);
                }
                sqlx::query("UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL")
                    .bind(token.created_at)
                    .bind(token.user_id)
                    .bind(token.purpose.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO email_tokens (user_id, purpose, token_hash, email, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(token.user_id)
                .bind(token.purpose.as_str())
                .bind(&token.token_hash)
                .bind(token.email.as_deref())
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn email_token_owner(
                &self,
                token_hash: &str,
                purpose: $crate::store::EmailTokenPurpose,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<i64>> {
                let sql = "SELECT user_id FROM email_tokens \
                           WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3";
                Ok(sqlx::query_scalar(sql)
                    .bind(token_hash)
                    .bind(purpose.as_str())
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn confirm_email(
                &self,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::User>> {
                let purpose = $crate::store::EmailTokenPurpose::VerifyEmail.as_str();
                let owner: Option<i64> = sqlx::query_scalar("SELECT user_id FROM email_tokens WHERE token_hash = $1 AND purpose = $2")
                    .bind(token_hash)
                    .bind(purpose)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(user_id) = owner else {
                    return Ok(None);
                };
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::User(user_id));
                // Returning early drops the transaction, which rolls it back.
                let mut tx = self.begin_write().await?;
                // The user first, as `create_email_token` does.
                if !Self::lock_row(&mut tx, $crate::store::sql::RowLock::User(user_id)).await? {
                    return Ok(None);
                }
                // One statement: two concurrent uses cannot both succeed.
                let used: Option<Option<String>> = sqlx::query_scalar(
                    "UPDATE email_tokens SET used_at = $1 \
                     WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
                     RETURNING email",
                )
                .bind(now)
                .bind(token_hash)
                .bind(purpose)
                .fetch_all(&mut *tx)
                .await?
                .pop();
                let Some(Some(email)) = used else {
                    return Ok(None);
                };
                // Links mailed before, to the old address, stop working with it.
                sqlx::query($crate::store::sql::VOID_LINKS)
                    .bind(now)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                let sql = concat!(
                    "UPDATE users SET email = $1, email_verified = TRUE, updated_at = $2 WHERE id = $3 RETURNING ",
                    $crate::store::sql::user_columns!()
                );
                let user = sqlx::query_as(sql)
                    .bind(email)
                    .bind(now)
                    .bind(user_id)
                    .fetch_all(&mut *tx)
                    .await?
                    .pop();
                tx.commit().await?;
                Ok(user)
            }

            async fn set_full_name(
                &self,
                user_id: i64,
                full_name: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::User(user_id));
                sqlx::query("UPDATE users SET full_name = $1, updated_at = $2 WHERE id = $3")
                    .bind(full_name)
                    .bind(now)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(in crate::store) use impl_profile_store;
