//! SQL of `HousekeepingStore`. Sessions and link tokens are walked by primary key, a range at
//! a time: each statement reads at most `batch` rows by the index every table has, however
//! few of them have ended. Events are deleted from the oldest id, which is also the oldest
//! time. Failure counts are few unless someone types many names, and then those are stale.

macro_rules! impl_housekeeping_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::HousekeepingStore for $store {
            async fn delete_ended_sessions(
                &self,
                after: i64,
                batch: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::SweepStep> {
                // The negation of "live" as every lookup reads it.
                $crate::store::sql::housekeeping::delete_in_next_range!(
                    &self.pool, "sessions", "expires_at <= $3 OR idle_expires_at <= $3", after, batch, now
                )
            }

            async fn delete_expired_email_tokens(
                &self,
                after: i64,
                batch: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::SweepStep> {
                // A used token stays until it expires, so that a second use is told "used";
                // after that every lookup answers "invalid or expired" with or without it.
                $crate::store::sql::housekeeping::delete_in_next_range!(
                    &self.pool, "email_tokens", "expires_at <= $3", after, batch, now
                )
            }

            async fn delete_oldest_events(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                batch: i64,
            ) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT $2) \
                     AND created_at < $1",
                )
                .bind(before)
                .bind(batch)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn delete_stale_login_failures(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                locked_at: i32,
                batch: i64,
            ) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM login_throttle WHERE name_hash IN (SELECT name_hash FROM login_throttle \
                     WHERE last_failure_at < $1 AND failures < $2 LIMIT $3)",
                )
                .bind(before)
                .bind(locked_at)
                .bind(batch)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

/// One step of a walk through `$table` by id: the `$batch` rows after id `$after`, of which
/// those where `$ended` holds (`$3` is `$now`) are deleted. A `SweepStep`.
macro_rules! delete_in_next_range {
    ($pool:expr, $table:literal, $ended:literal, $after:expr, $batch:expr, $now:expr) => {{
        let last_id: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT MAX(id) FROM (SELECT id FROM ",
            $table,
            " WHERE id > $1 ORDER BY id LIMIT $2) AS chunk"
        ))
        .bind($after)
        .bind($batch)
        .fetch_one($pool)
        .await?;
        let deleted = match last_id {
            Some(last) => sqlx::query(concat!(
                "DELETE FROM ",
                $table,
                " WHERE id > $1 AND id <= $2 AND (",
                $ended,
                ")"
            ))
            .bind($after)
            .bind(last)
            .bind($now)
            .execute($pool)
            .await?
            .rows_affected(),
            None => 0,
        };
        Ok($crate::store::SweepStep { deleted, last_id })
    }};
}

pub(in crate::store) use {delete_in_next_range, impl_housekeeping_store};
