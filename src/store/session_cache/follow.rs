//! PostgreSQL's change feed for the session cache: triggers (migration 0006) send a
//! notification for every change that can end a session or alter a user, to every instance.
//! Delivery takes a moment: another instance refuses a revoked session once the notification
//! arrives (normally well under a millisecond on a local network), not in the same instant.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::SessionCache;
use crate::store::lost_connections;

/// The channel the triggers notify.
const CHANNEL: &str = "gatehouse_session_changes";

/// What each instance sends on the channel to prove its own subscription still receives.
pub(super) const HEARTBEAT: &str = "heartbeat";

/// How often the heartbeat is sent, and how long silence may last before the subscription is
/// taken for dead: a connection can die without a reset (a dropped network path), and waiting
/// on it would trust the cache while changes go unheard.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const SILENCE_LIMIT: Duration = Duration::from_secs(12);

/// How long to wait before subscribing again after the connection was lost.
const RETRY: Duration = Duration::from_secs(1);

/// Keeps `cache` in step with the database for as long as the task runs. The cache is trusted
/// only while subscribed: from the moment the subscription has delivered a notification
/// (then emptied, since changes before it went unheard) until the connection is lost or
/// falls silent.
pub(crate) async fn follow_postgres(pool: PgPool, cache: Arc<SessionCache>) {
    let heartbeat = tokio::spawn(send_heartbeats(pool.clone()));
    let _stop_heartbeat = AbortOnDrop(heartbeat);
    let mut failures = 0u32;
    // Said once per outage: a deaf feed is a setup to fix, whenever it shows.
    let mut said_deaf = false;
    loop {
        match subscribe(&pool, &cache).await {
            Ok(mut listener) => {
                cache.set_trusted(true);
                if failures > 0 {
                    tracing::info!("session cache: change feed back; serving sessions from memory");
                }
                failures = 0;
                said_deaf = false;
                // Any notification, our heartbeat included, shows the subscription is alive.
                while let Ok(Ok(Some(change))) =
                    tokio::time::timeout(SILENCE_LIMIT, listener.try_recv()).await
                {
                    cache.apply(change.payload());
                }
                cache.set_trusted(false);
                // The feed's connection was cut or fell silent: the pooled ones may be too.
                lost_connections::note();
                tracing::warn!(
                    "session cache: change feed lost; reading every session from the database until it is back"
                );
            }
            Err(err @ FeedError::Deaf) if !said_deaf => {
                said_deaf = true;
                tracing::warn!(error = %err, "session cache: the change feed delivers nothing; reading every session from the database");
            }
            Err(err) => {
                if failures == 0 {
                    tracing::warn!(error = %err, "session cache: cannot subscribe to the change feed; retrying");
                }
            }
        }
        failures = failures.saturating_add(1);
        tokio::time::sleep(RETRY).await;
    }
}

/// A subscription to the channel that has been seen to deliver.
async fn subscribe(pool: &PgPool, cache: &SessionCache) -> Result<PgListener, FeedError> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is reported, not quietly replaced: every loss goes through
    // `set_trusted(false)` and a new subscription.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    hears_itself(pool, &mut listener, cache).await?;
    Ok(listener)
}

/// Waits for a first notification, sending a heartbeat to have one. `LISTEN` succeeds on
/// connections that never deliver a notification (through a pooler in transaction mode, for
/// one), and a cache trusted on such a feed would serve sessions revoked elsewhere until the
/// silence limit. Any notification proves delivery, and is applied as usual.
async fn hears_itself(
    pool: &PgPool,
    listener: &mut PgListener,
    cache: &SessionCache,
) -> Result<(), FeedError> {
    notify(pool, HEARTBEAT).await?;
    match tokio::time::timeout(SILENCE_LIMIT, listener.try_recv()).await {
        Ok(Ok(Some(heard))) => {
            cache.apply(heard.payload());
            Ok(())
        }
        Ok(Ok(None)) => Err(FeedError::Closed),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(FeedError::Deaf),
    }
}

async fn notify(pool: &PgPool, payload: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}

/// Why a subscription is not trusted.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the listening connection closed")]
    Closed,
    #[error(
        "no notification arrived, not even a heartbeat of its own (a connection pooler in transaction mode between the service and PostgreSQL delivers none)"
    )]
    Deaf,
}

async fn send_heartbeats(pool: PgPool) {
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        every.tick().await;
        // A failure also shows as silence on the listener, which handles it.
        if let Err(err) = notify(&pool, HEARTBEAT).await {
            lost_connections::note_if_cut(&err);
        }
    }
}

/// Stops the heartbeat with the follower (which is itself aborted at shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
