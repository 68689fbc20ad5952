//! SQL of `ThrottleStore`.

macro_rules! impl_throttle_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ThrottleStore for $store {
            async fn add_login_failure(
                &self,
                name_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::LoginFailures> {
                // One statement, so concurrent failures on several instances all count.
                let sql = "INSERT INTO login_throttle (name_hash, failures, last_failure_at) \
                           VALUES ($1, 1, $2) \
                           ON CONFLICT (name_hash) DO UPDATE \
                           SET failures = login_throttle.failures + 1, last_failure_at = $2 \
                           RETURNING failures, last_failure_at";
                Ok(sqlx::query_as(sql)
                    .bind(name_hash)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?
                    .pop()
                    .ok_or(sqlx::Error::RowNotFound)?)
            }

            async fn clear_login_failures(&self, name_hash: &str) -> $crate::store::StoreResult<()> {
                sqlx::query($crate::store::sql::FORGET_FAILURES)
                    .bind(name_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(in crate::store) use impl_throttle_store;
