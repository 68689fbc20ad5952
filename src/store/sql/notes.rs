//! SQL of `NoteStore`.

macro_rules! impl_note_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::NoteStore for $store {
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
                    .fetch_all(&self.pool)
                    .await?
                    .pop()
                    .ok_or(sqlx::Error::RowNotFound)?)
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
                    .fetch_all(&self.pool)
                    .await?
                    .pop())
            }

            async fn delete_note(&self, owner_id: i64, note_id: i64) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM notes WHERE id = $1 AND owner_id = $2")
                    .bind(note_id)
                    .bind(owner_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(in crate::store) use impl_note_store;
