//! Reading the database of the tutorial's FastAPI backend (PostgreSQL, made by its Alembic
//! migrations or by SQLAlchemy's `metadata.create_all`), for `gatehouse import`.
//!
//! `users` has `id`, `username` and the bcrypt hash, which the Alembic migration names
//! `password` and the SQLAlchemy table `hashed_password`; `notes` has `id`, `text` and
//! `completed`, and may be missing. Rows are read in id order, one batch at a time.

use anyhow::{Context, bail};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::redact_url;

/// A row of the tutorial's `users`; any column may be NULL there.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TutorialUser {
    pub id: i64,
    pub username: Option<String>,
    pub password_hash: Option<String>,
}

/// A row of the tutorial's `notes`, which have no owner.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TutorialNote {
    pub id: i64,
    pub text: Option<String>,
    pub completed: Option<bool>,
}

/// Which name the hash column has.
#[derive(Debug, Clone, Copy)]
enum HashColumn {
    HashedPassword,
    Password,
}

pub struct TutorialDb {
    pool: PgPool,
    hash_column: HashColumn,
    has_notes: bool,
}

impl TutorialDb {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("--from must be a postgresql:// URL (the tutorial's database)");
        }
        super::refuse_sslpassword(url, "--from")?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .with_context(|| format!("connecting to {}", redact_url(url)))?;
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'users'",
        )
        .fetch_all(&pool)
        .await?;
        let has = |name: &str| columns.iter().any(|c| c == name);
        if !has("id") || !has("username") {
            bail!(
                "{} has no tutorial `users` table (id, username, hashed_password)",
                redact_url(url)
            );
        }
        let hash_column = if has("hashed_password") {
            HashColumn::HashedPassword
        } else if has("password") {
            HashColumn::Password
        } else {
            bail!("the `users` table has neither a `hashed_password` nor a `password` column");
        };
        let has_notes: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = \
             current_schema() AND table_name = 'notes' AND column_name = 'text')",
        )
        .fetch_one(&pool)
        .await?;
        Ok(Self {
            pool,
            hash_column,
            has_notes,
        })
    }

    /// Whether the database has the tutorial's `notes` table.
    pub fn has_notes(&self) -> bool {
        self.has_notes
    }

    pub async fn count_users(&self) -> anyhow::Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    pub async fn count_notes(&self) -> anyhow::Result<u64> {
        if !self.has_notes {
            return Ok(0);
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Up to `limit` users with an id above `after`, by id.
    pub async fn users_after(&self, after: i64, limit: i64) -> anyhow::Result<Vec<TutorialUser>> {
        let sql = match self.hash_column {
            HashColumn::HashedPassword => {
                "SELECT CAST(id AS BIGINT) AS id, username::TEXT AS username, \
                 hashed_password::TEXT AS password_hash FROM users WHERE id > $1 ORDER BY id LIMIT $2"
            }
            HashColumn::Password => {
                "SELECT CAST(id AS BIGINT) AS id, username::TEXT AS username, \
                 password::TEXT AS password_hash FROM users WHERE id > $1 ORDER BY id LIMIT $2"
            }
        };
        Ok(sqlx::query_as(sql)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Up to `limit` notes with an id above `after`, by id.
    pub async fn notes_after(&self, after: i64, limit: i64) -> anyhow::Result<Vec<TutorialNote>> {
        if !self.has_notes {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT CAST(id AS BIGINT) AS id, text::TEXT AS text, completed FROM notes \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
