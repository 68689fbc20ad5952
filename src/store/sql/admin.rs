//! SQL of `AdminStore`: finding, promoting and deleting users, and importing rows once.

/// The users a search matches: `$1` is a `LIKE` pattern of the case-folded query.
macro_rules! user_search_filter {
    () => {
        " FROM users WHERE username_key LIKE $1 ESCAPE '\\' \
          OR LOWER(COALESCE(email, '')) LIKE $1 ESCAPE '\\' \
          OR LOWER(COALESCE(full_name, '')) LIKE $1 ESCAPE '\\'"
    };
}

macro_rules! impl_admin_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::AdminStore for $store {
            async fn search_users(
                &self,
                query: &str,
                limit: i64,
                offset: i64,
            ) -> $crate::store::StoreResult<$crate::store::UserPage> {
                let pattern = $crate::store::contains_pattern(query);
                let select = concat!(
                    "SELECT ",
                    $crate::store::sql::user_columns!(),
                    $crate::store::sql::admin::user_search_filter!(),
                    " ORDER BY id LIMIT $2 OFFSET $3"
                );
                // Planned for the pattern at hand each time (`persistent(false)`), never once for
                // any pattern. PostgreSQL may settle on such a generic plan after five runs of a
                // prepared statement; forced to (`plan_cache_mode`), it read users in id order,
                // hoping to fill the page early, which for a rare name means reading every user
                // (a second with 1,000,000). Knowing the pattern, the planner reads the trigram
                // indexes (migration 0008) for a rare name and the id order for a common one.
                let users = sqlx::query_as(select)
                    .persistent(false)
                    .bind(&pattern)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.pool)
                    .await?;
                let count = concat!("SELECT COUNT(*)", $crate::store::sql::admin::user_search_filter!());
                let total = sqlx::query_scalar(count)
                    .persistent(false)
                    .bind(&pattern)
                    .fetch_one(&self.pool)
                    .await?;
                Ok($crate::store::UserPage { users, total })
            }

            async fn set_superuser(
                &self,
                user_id: i64,
                is_superuser: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::User(user_id));
                let done = sqlx::query("UPDATE users SET is_superuser = $1, updated_at = $2 WHERE id = $3")
                    .bind(is_superuser)
                    .bind(now)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_user(&self, user_id: i64) -> $crate::store::StoreResult<bool> {
                // Notes, sessions (with their refresh tokens) and email tokens cascade; events
                // keep their rows with the user set to NULL.
                let _forget = self.cache.forget_after($crate::store::session_cache::Change::User(user_id));
                let done = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn import_user(
                &self,
                source_id: i64,
                user: $crate::store::NewUser,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::ImportOutcome> {
                use $crate::store::ImportOutcome;
                let mut tx = self.begin_write().await?;
                if !$crate::store::sql::admin::claim_source_row!(tx, "users", source_id, now) {
                    return Ok(ImportOutcome::AlreadyImported);
                }
                let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
                    "INSERT INTO users (username, username_key, email, full_name, hashed_password, disabled, created_at, updated_at) \
                     VALUES ($1, $2, NULL, NULL, $3, FALSE, $4, $4) RETURNING id",
                )
                .bind(user.username.as_str())
                .bind(user.username.key())
                .bind(&user.hashed_password)
                .bind(now)
                .fetch_one(&mut *tx)
                .await;
                let local_id = match inserted.map_err($crate::store::StoreError::from) {
                    Ok(id) => id,
                    // Dropping the transaction rolls the claim back: a later run says the same.
                    Err($crate::store::StoreError::Conflict(_)) => return Ok(ImportOutcome::Conflict),
                    Err(other) => return Err(other),
                };
                $crate::store::sql::admin::record_local_id!(tx, "users", source_id, local_id);
                tx.commit().await?;
                Ok(ImportOutcome::Imported(local_id))
            }

            async fn import_note(
                &self,
                source_id: i64,
                owner_id: i64,
                text: &$crate::domain::NoteText,
                completed: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::ImportOutcome> {
                use $crate::store::ImportOutcome;
                let mut tx = self.begin_write().await?;
                if !$crate::store::sql::admin::claim_source_row!(tx, "notes", source_id, now) {
                    return Ok(ImportOutcome::AlreadyImported);
                }
                let local_id: i64 = sqlx::query_scalar(
                    "INSERT INTO notes (owner_id, text, completed, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(owner_id)
                .bind(text.as_str())
                .bind(completed)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                $crate::store::sql::admin::record_local_id!(tx, "notes", source_id, local_id);
                tx.commit().await?;
                Ok(ImportOutcome::Imported(local_id))
            }
        }
    };
}

/// Claims a source row inside `tx`; false when an earlier run imported it.
macro_rules! claim_source_row {
    ($tx:ident, $source:literal, $source_id:expr, $now:expr) => {
        sqlx::query(concat!(
            "INSERT INTO imported_rows (source, source_id, imported_at) VALUES ('",
            $source,
            "', $1, $2) ON CONFLICT DO NOTHING"
        ))
        .bind($source_id)
        .bind($now)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            > 0
    };
}

macro_rules! record_local_id {
    ($tx:ident, $source:literal, $source_id:expr, $local_id:expr) => {
        sqlx::query(concat!(
            "UPDATE imported_rows SET local_id = $1 WHERE source = '",
            $source,
            "' AND source_id = $2"
        ))
        .bind($local_id)
        .bind($source_id)
        .execute(&mut *$tx)
        .await?
    };
}

pub(in crate::store) use {
    claim_source_row, impl_admin_store, record_local_id, user_search_filter,
};
