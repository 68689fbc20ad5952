//! PostgreSQL: the production backend.

use std::sync::Arc;

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::session_cache::{SessionCache, follow_postgres};
use super::{ConnectOptions, redact_url, sql::impl_store};

pub struct PgStore {
    pool: PgPool,
    cache: Arc<SessionCache>,
    /// The task that keeps `cache` in step with every instance's writes.
    follower: Option<tokio::task::AbortHandle>,
}

impl PgStore {
    pub async fn connect(options: &ConnectOptions) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(options.acquire_timeout)
            .connect(&options.url)
            .await
            .with_context(|| format!("connecting to {}", redact_url(&options.url)))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .context("running PostgreSQL migrations")?;
        if options.session_cache_entries == 0 {
            return Ok(Self {
                pool,
                cache: Arc::new(SessionCache::disabled()),
                follower: None,
            });
        }
        let cache = Arc::new(SessionCache::following_notifications(
            options.session_cache_entries,
        ));
        let follower = tokio::spawn(follow_postgres(pool.clone(), cache.clone())).abort_handle();
        Ok(Self {
            pool,
            cache,
            follower: Some(follower),
        })
    }
}

impl PgStore {
    /// Stops following changes (at `close`, and when dropped): the follower holds a connection.
    fn stop_background_work(&self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
        self.cache.close();
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop_background_work();
    }
}

impl_store!(PgStore);
