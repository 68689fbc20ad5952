//! SQL of `EventStore`.

macro_rules! impl_event_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::EventStore for $store {
            async fn record_event(
                &self,
                event: $crate::store::NewEvent,
            ) -> $crate::store::StoreResult<()> {
                $crate::store::sql::insert_event!(&self.pool, event).await?;
                Ok(())
            }

            async fn recent_events(
                &self,
                user_id: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Event>> {
                let sql = concat!(
                    "SELECT ",
                    $crate::store::sql::event_columns!(),
                    " FROM events WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
                );
                Ok(sqlx::query_as(sql)
                    .bind(user_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}

/// The statement that records a `NewEvent`, on the pool or inside a transaction (a session
/// starts with its login event); a future to await.
macro_rules! insert_event {
    ($executor:expr, $event:expr) => {{
        let event: $crate::store::NewEvent = $event;
        sqlx::query(
            "INSERT INTO events (kind, user_id, actor_id, ip, user_agent, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.kind)
        .bind(event.user_id)
        .bind(event.actor_id)
        .bind(event.ip)
        .bind(event.user_agent)
        .bind(event.detail)
        .bind(event.created_at)
        .execute($executor)
    }};
}

pub(in crate::store) use {impl_event_store, insert_event};
