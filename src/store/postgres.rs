//! PostgreSQL: the production backend.

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{ConnectOptions, redact_url, sql::impl_store};

pub struct PgStore {
    pool: PgPool,
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
        Ok(Self { pool })
    }
}

impl_store!(PgStore);
