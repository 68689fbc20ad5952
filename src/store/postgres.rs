//! PostgreSQL: the production backend.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::lost_connections;
use super::session_cache::{SessionCache, follow_postgres};
use super::sql::{RowLock, bind_new_session, impl_store, insert_session, session_columns};
use super::warm_pool::{RECHECK_AFTER_IDLE, WarmPool};
use super::{ConnectOptions, MAX_CONNECTIONS, NewSession, Session, Store, StoreResult, redact_url};

/// What the database server shows as the service's connections (`pg_stat_activity`) when
/// neither the URL nor `PGAPPNAME` names them; those of `own_connections` add their role to it.
const APPLICATION_NAME: &str = "gatehouse";

/// PostgreSQL keeps the first 63 bytes of a connection's name.
const APPLICATION_NAME_MAX: usize = 63;

pub struct PgStore {
    pool: WarmPool,
    cache: Arc<SessionCache>,
    /// The task that keeps `cache` in step with every instance's writes.
    follower: Option<tokio::task::AbortHandle>,
    /// For a store made by `own_connections`, the store whose session cache it shares, kept
    /// alive so that its change feed goes on keeping the cache in step; it closes the cache.
    parent: Option<Arc<PgStore>>,
    /// Connections kept open for requests (`ConnectOptions::min_connections`).
    min_connections: u32,
}

impl PgStore {
    pub async fn connect(options: &ConnectOptions) -> anyhow::Result<Self> {
        let connecting = || format!("connecting to {}", redact_url(&options.url));
        super::refuse_sslpassword(&options.url, "DATABASE_URL")?;
        let mut connect = PgConnectOptions::from_str(&options.url).with_context(connecting)?;
        if connect.get_application_name().is_none() {
            connect = connect.application_name(APPLICATION_NAME);
        }
        // The change feed's listener holds one of the pool's connections for good, and sqlx
        // counts it: one more keeps the number asked for open beside it.
        let listening = options.session_cache_entries > 0;
        let min_connections = match options.min_connections {
            0 => 0,
            wanted => wanted + u32::from(listening),
        };
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(min_connections)
            // sqlx checks each connection with a round trip when it comes back to the pool
            // (which `WarmPool` spares most statements); checking it again before each use
            // (its default) was one more round trip per query. A connection that sat idle
            // for a while may have been cut since (a server restart, a firewall), so that
            // one is checked. A connection back in
            // the pool for less than a second is trusted until the first sign of a cut (a
            // failed query, or the change feed's connection lost); from then on, each one
            // back before that sign is checked too (`lost_connections`). sqlx's reaper also
            // puts idle connections back (every `idle_timeout`), restarting their idle time,
            // so a cut one it has just put back can still fail a request within that second.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= RECHECK_AFTER_IDLE
                        || lost_connections::may_be_cut(meta.idle_for)
                    {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect.clone());
        // One connection now, as `connect_with` would open, so that a wrong URL or password
        // stops the start with its own error; the rest once the schema is in place. A server
        // that refuses connections makes the pool retry until its timeout and then say only
        // that it timed out: one direct attempt, as bounded, then tells why.
        match pool.acquire().await {
            Ok(_) => {}
            Err(timed_out @ sqlx::Error::PoolTimedOut) => {
                let direct = sqlx::PgConnection::connect_with(&connect);
                let cause = match tokio::time::timeout(options.acquire_timeout, direct).await {
                    Ok(Err(refused)) => anyhow::Error::from(refused),
                    _ => anyhow::Error::from(timed_out),
                };
                return Err(cause.context(connecting()));
            }
            Err(other) => return Err(anyhow::Error::from(other).context(connecting())),
        }
        super::run_migrations!(
            &pool,
            sqlx::migrate!("migrations/postgres"),
            options.migrations,
            "PostgreSQL"
        );
        open_min_connections(&pool, &tokio::runtime::Handle::current());
        if !listening {
            return Ok(Self {
                pool: WarmPool::new(pool),
                cache: Arc::new(SessionCache::disabled()),
                follower: None,
                parent: None,
                min_connections: options.min_connections,
            });
        }
        let cache = Arc::new(SessionCache::following_notifications(
            options.session_cache_entries,
        ));
        let follower = tokio::spawn(follow_postgres(pool.clone(), cache.clone())).abort_handle();
        Ok(Self {
            pool: WarmPool::new(pool),
            cache,
            follower: Some(follower),
            parent: None,
            min_connections: options.min_connections,
        })
    }
}

/// A session with its first refresh token and its login event, in one statement: one round
/// trip, and atomic as any statement is. (In a transaction of three inserts, the login's write
/// took five round trips, each one a wake-up of the database server and of this process.)
/// PostgreSQL runs every insert inside `WITH` to completion, read or not; the token and the
/// event are inserted only when their first bound value is not null, and only with a session.
const START_SESSION: &str = concat!(
    "WITH started AS (",
    insert_session!(" FOR SHARE"),
    "), first_token AS (\
     INSERT INTO refresh_tokens (session_id, token_hash, created_at) \
     SELECT id, $11, created_at FROM started WHERE $11 IS NOT NULL\
     ), login_event AS (\
     INSERT INTO events (kind, user_id, actor_id, ip, user_agent, detail, created_at) \
     SELECT $12, $13, $14, $15, $16, $17, $18 FROM started WHERE $12 IS NOT NULL\
     ) SELECT ",
    session_columns!(),
    " FROM started"
);

impl PgStore {
    /// A transaction that writes (the name the shared SQL calls; SQLite's differs).
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin().await
    }

    /// Locks a row until the transaction ends; whether it exists.
    async fn lock_row(
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        row: RowLock,
    ) -> sqlx::Result<bool> {
        let (sql, id) = match row {
            RowLock::Session(id) => ("SELECT id FROM sessions WHERE id = $1 FOR UPDATE", id),
            // Not `FOR UPDATE`: the transaction's own inserts take key-share locks on the user
            // (their foreign keys), and so may other transactions' inserts for that user.
            RowLock::User(id) => ("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE", id),
        };
        let found: Option<i64> = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(found.is_some())
    }

    async fn start_session(&self, session: NewSession) -> StoreResult<Option<Session>> {
        let event = session.event.as_ref();
        Ok(bind_new_session!(sqlx::query_as(START_SESSION), &session)
            .bind(session.first_refresh_token_hash.as_deref())
            .bind(event.map(|e| e.kind))
            .bind(event.and_then(|e| e.user_id))
            .bind(event.and_then(|e| e.actor_id))
            .bind(event.and_then(|e| e.ip.as_deref()))
            .bind(event.and_then(|e| e.user_agent.as_deref()))
            .bind(event.and_then(|e| e.detail.as_deref()))
            .bind(event.map(|e| e.created_at))
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Stops following changes (at `close`, and when dropped): the follower holds a connection.
    fn stop_background_work(&self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
        if self.parent.is_none() {
            self.cache.close();
        }
    }

    /// A pool of its own with the same settings, connecting on first use, beside the same
    /// session cache. The cache needs no follower of its own: the parent's hears this pool's
    /// writes like any other instance's.
    fn own_connections(
        self: Arc<Self>,
        runtime: &tokio::runtime::Handle,
        role: &str,
        max_connections: u32,
        min_connections: u32,
    ) -> Arc<dyn Store> {
        let connect = self.pool.sqlx().connect_options();
        let suffix = format!("-{role}");
        let name = format!(
            "{}{suffix}",
            truncated(
                connect.get_application_name().unwrap_or(APPLICATION_NAME),
                APPLICATION_NAME_MAX.saturating_sub(suffix.len()),
            )
        );
        let min_connections = min_connections.min(self.min_connections);
        let options = self
            .pool
            .sqlx()
            .options()
            .clone()
            .max_connections(max_connections)
            .min_connections(min_connections);
        // The pool starts its idle-connection reaper on the current runtime.
        let pool = {
            let _inside = runtime.enter();
            options.connect_lazy_with((*connect).clone().application_name(&name))
        };
        open_min_connections(&pool, runtime);
        Arc::new(Self {
            pool: WarmPool::new(pool),
            cache: self.cache.clone(),
            follower: None,
            parent: Some(self),
            min_connections,
        })
    }
}

/// Opens the pool's `min_connections` side by side, in the background on `runtime` (whose
/// event loop then serves them), so that the first requests find them open. Once they are,
/// sqlx keeps that many: it opens another when one is closed or reaped. But it opens them one
/// after another, and a pool made with `connect_lazy_with` none until a connection closes.
/// One that fails to open is left to the requests, which open connections as they need them.
fn open_min_connections(pool: &PgPool, runtime: &tokio::runtime::Handle) {
    let wanted = pool.options().get_min_connections();
    if wanted == 0 {
        return;
    }
    let pool = pool.clone();
    runtime.spawn(async move {
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..wanted {
            opening.spawn(pool.acquire());
        }
        // All are held until the last has opened (a few milliseconds on a reachable server),
        // so that each acquire opens a connection of its own rather than taking back another's.
        let opened = opening.join_all().await;
        let failed: Vec<_> = opened
            .iter()
            .filter_map(|result| result.as_ref().err())
            .collect();
        if let Some(error) = failed.first() {
            tracing::warn!(
                pool = pool.connect_options().get_application_name().unwrap_or_default(),
                failed = failed.len(),
                wanted,
                %error,
                "could not open every database connection kept ready; requests will open them"
            );
        }
    });
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop_background_work();
    }
}

impl_store!(PgStore);

/// The longest start of `text` within `max_bytes` that ends on a character boundary.
fn truncated(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_cut_on_a_character_boundary() {
        assert_eq!(truncated("gatehouse", 63), "gatehouse");
        // "é" is two bytes: a cut through it keeps the byte before.
        assert_eq!(truncated("abé", 3), "ab");
        assert_eq!(truncated("abé", 4), "abé");
        let long = "é".repeat(40);
        let name = format!(
            "{}-login",
            truncated(&long, APPLICATION_NAME_MAX - "-login".len())
        );
        assert!(name.len() <= APPLICATION_NAME_MAX && name.ends_with("-login"));
    }
}
