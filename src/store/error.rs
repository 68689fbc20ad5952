use sqlx::error::DatabaseError;

/// What can go wrong in the store, in terms the HTTP layer can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write; carries the constraint's name.
    #[error("conflict on {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    /// The database cannot be reached, is shutting down or takes no writes: the client
    /// should retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database gave up this transaction for now, though it answers: a lost
    /// serialization race, a deadlock, a lock not granted in time. The same request may
    /// succeed when retried; other work need not wait.
    #[error("database contention: {0}")]
    Contended(String),
    /// Text the database cannot store: NUL, which PostgreSQL refuses in any text value. The
    /// domain types refuse it first; this keeps one that slips through a 400, not a 500.
    #[error("text with a NUL character")]
    NulInText,
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    /// The store's queries fail through here, so this is also where a cut connection is noted.
    fn from(err: sqlx::Error) -> Self {
        super::lost_connections::note_if_cut(&err);
        match err {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict(db.constraint().unwrap_or("unique").to_string())
            }
            // A row written for something deleted meanwhile (a note or a link for a user
            // deleted while the request ran): that something is not found.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Self::NotFound,
            // character_not_in_repertoire: PostgreSQL's answer to a NUL in text.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("22021") => Self::NulInText,
            sqlx::Error::Database(db) if is_outage(db.as_ref()) => {
                Self::Unavailable(db.message().to_string())
            }
            sqlx::Error::Database(db) if is_contention(db.as_ref()) => {
                Self::Contended(db.message().to_string())
            }
            other => Self::Other(other.into()),
        }
    }
}

/// Errors that mean the database is away, not "never", so that the client may retry (a 503):
/// PostgreSQL's connection exceptions (08), operator intervention such as a shutdown (57),
/// insufficient resources (53), a database not accepting connections (55000) and a server
/// that takes no writes (25006: a standby, as during a failover); SQLite's busy and locked
/// codes, extended forms included.
fn is_outage(db: &dyn DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    let code = code.as_ref();
    // SQLite's codes are numbers, an extended code carrying its primary one in the low byte;
    // PostgreSQL's SQLSTATEs have five characters.
    if code.len() < 5 {
        let primary = code.parse::<u32>().map(|n| n & 0xff);
        return primary.is_ok_and(|n| matches!(n, 5 | 6));
    }
    ["08", "57", "53"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(code, "55000" | "25006")
}

/// PostgreSQL giving up one transaction while it answers others: a lost serialization race
/// (40001), a deadlock victim (40P01), a lock not granted in time (55P03).
fn is_contention(db: &dyn DatabaseError) -> bool {
    matches!(db.code().as_deref(), Some("40001" | "40P01" | "55P03"))
}
