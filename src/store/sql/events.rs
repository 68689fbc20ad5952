//! SQL of `EventStore`.

macro_rules! impl_event_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::EventStore for $store {
            async fn record_event(&self, event: $crate::store::NewEvent) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO events (kind, user_id, actor_id, ip, user_agent, detail, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(event.kind)
                .bind(event.user_id)
                .bind(event.actor_id)
                .bind(event.ip.as_deref())
                .bind(event.user_agent.as_deref())
                .bind(event.detail.as_deref())
                .bind(event.created_at)
                .execute(&self.pool)
                .await?;
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
                Ok(sqlx::query_as(sql).bind(user_id).bind(limit).fetch_all(&self.pool).await?)
            }
        }
    };
}

pub(in crate::store) use impl_event_store;
