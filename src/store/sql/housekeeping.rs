//! SQL of `HousekeepingStore`. Sessions, link tokens and events are walked by primary key, a
//! range at a time: each statement reads at most `batch` rows by an index, however few of them
//! qualify, and deletes at most `batch` rows. Failure counts are found by the time of their
//! last failure. Where there is nothing to delete, the statements only read: on SQLite even a
//! delete that finds nothing takes the write lock.

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
                use $crate::store::SweepStep;
                use $crate::store::sql::housekeeping::{delete_in_range, next_range, session_ended};
                let (last, ended) = next_range!(&self.pool, "sessions", session_ended!(), after, batch, now);
                let Some(last) = last else {
                    return Ok(SweepStep { deleted: 0, next: None });
                };
                if ended == 0 {
                    return Ok(SweepStep { deleted: 0, next: Some(last) });
                }
                // A family keeps every token it used until its session goes, so the cascade of
                // one batch of sessions could be a long write: the tokens go first, a batch at
                // a time, and the range is walked again until none is left.
                let tokens = sqlx::query(concat!(
                    "DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM refresh_tokens \
                     WHERE session_id IN (SELECT id FROM sessions WHERE id > $1 AND id <= $2 AND (",
                    session_ended!(),
                    ")) LIMIT $4)"
                ))
                .bind(after)
                .bind(last)
                .bind(now)
                .bind(batch)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if i64::try_from(tokens).unwrap_or(i64::MAX) >= batch {
                    return Ok(SweepStep { deleted: 0, next: Some(after) });
                }
                let sessions = delete_in_range!(&self.pool, "sessions", session_ended!(), after, last, now);
                Ok(SweepStep { deleted: sessions, next: Some(last) })
            }

            async fn delete_expired_email_tokens(
                &self,
                after: i64,
                batch: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::SweepStep> {
                use $crate::store::SweepStep;
                // A used token stays until it expires, so that a second use is told "used";
                // after that every lookup answers "invalid or expired" with or without it.
                let range = $crate::store::sql::housekeeping::sweep_range!(
                    &self.pool, "email_tokens", "expires_at <= $3", after, batch, now
                );
                Ok(match range {
                    Some((last, _, deleted)) => SweepStep { deleted, next: Some(last) },
                    None => SweepStep { deleted: 0, next: None },
                })
            }

            async fn delete_events_before(
                &self,
                after: i64,
                batch: i64,
                before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::SweepStep> {
                use $crate::store::SweepStep;
                let range = $crate::store::sql::housekeeping::sweep_range!(
                    &self.pool, "events", "created_at < $3", after, batch, before
                );
                Ok(match range {
                    Some((last, old, deleted)) if old > 0 => SweepStep { deleted, next: Some(last) },
                    // Past the end, or among the events kept: nothing older lies beyond.
                    _ => SweepStep { deleted: 0, next: None },
                })
            }

            async fn delete_stale_login_failures(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                locked_at: i32,
                batch: i64,
            ) -> $crate::store::StoreResult<u64> {
                let stale: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM login_throttle \
                     WHERE last_failure_at < $1 AND failures < $2 LIMIT $3) AS stale",
                )
                .bind(before)
                .bind(locked_at)
                .bind(batch)
                .fetch_one(&self.pool)
                .await?;
                if stale == 0 {
                    return Ok(0);
                }
                // The conditions again outside: on PostgreSQL a failure counted meanwhile
                // makes the row fresh, and the delete then leaves it.
                let done = sqlx::query(
                    "DELETE FROM login_throttle WHERE name_hash IN (SELECT name_hash FROM login_throttle \
                     WHERE last_failure_at < $1 AND failures < $2 LIMIT $3) \
                     AND last_failure_at < $1 AND failures < $2",
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

/// The negation of "live" as every lookup of a session reads it (`$3` is now).
macro_rules! session_ended {
    () => {
        "expires_at <= $3 OR idle_expires_at <= $3"
    };
}

/// The next range of a walk through `$table` by id: the last id of the `$batch` rows after
/// `$after` (`None` past the end), and how many of them match `$ended` (`$3` is `$now`).
macro_rules! next_range {
    ($pool:expr, $table:literal, $ended:expr, $after:expr, $batch:expr, $now:expr) => {{
        let (last, matching): (Option<i64>, i64) = sqlx::query_as(concat!(
            "SELECT MAX(id), COALESCE(SUM(CASE WHEN ",
            $ended,
            " THEN 1 ELSE 0 END), 0) FROM (SELECT * FROM ",
            $table,
            " WHERE id > $1 ORDER BY id LIMIT $2) AS chunk"
        ))
        .bind($after)
        .bind($batch)
        .bind($now)
        .fetch_one($pool)
        .await?;
        (last, matching)
    }};
}

/// Deletes the rows of `$table` with ids in (`$after`, `$last`] where `$ended` holds (`$3` is
/// `$now`); how many.
macro_rules! delete_in_range {
    ($pool:expr, $table:literal, $ended:expr, $after:expr, $last:expr, $now:expr) => {
        sqlx::query(concat!(
            "DELETE FROM ",
            $table,
            " WHERE id > $1 AND id <= $2 AND (",
            $ended,
            ")"
        ))
        .bind($after)
        .bind($last)
        .bind($now)
        .execute($pool)
        .await?
        .rows_affected()
    };
}

/// One step of a walk that deletes in the range it reads: `None` past the end, else the last
/// id of the range, how many rows in it matched `$ended` and how many were deleted (none
/// without a match, so an empty range takes no write lock).
macro_rules! sweep_range {
    ($pool:expr, $table:literal, $ended:expr, $after:expr, $batch:expr, $now:expr) => {{
        use $crate::store::sql::housekeeping::{delete_in_range, next_range};
        let (last, matching) = next_range!($pool, $table, $ended, $after, $batch, $now);
        match last {
            Some(last) if matching > 0 => {
                let deleted = delete_in_range!($pool, $table, $ended, $after, last, $now);
                Some((last, matching, deleted))
            }
            Some(last) => Some((last, matching, 0)),
            None => None,
        }
    }};
}

pub(in crate::store) use {
    delete_in_range, impl_housekeeping_store, next_range, session_ended, sweep_range,
};
