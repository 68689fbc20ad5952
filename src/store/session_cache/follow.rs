//! PostgreSQL's change feed for the session cache: triggers (migration 0006) send a
//! notification for every change that can end a session or alter a user, to every instance.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::SessionCache;

/// The channel the triggers notify.
pub(crate) const CHANNEL: &str = "gatehouse_session_changes";

/// How long to wait before subscribing again after the connection was lost.
const RETRY: Duration = Duration::from_secs(1);

/// Keeps `cache` in step with the database for as long as the task runs. The cache is trusted
/// only while subscribed: from the moment `LISTEN` is in place (then emptied, since changes
/// before it went unheard) until the connection is lost.
pub(crate) async fn follow_postgres(pool: PgPool, cache: Arc<SessionCache>) {
    let mut lost_before = false;
    loop {
        match subscribe(&pool).await {
            Ok(mut listener) => {
                cache.set_trusted(true);
                if lost_before {
                    tracing::info!("session cache: change feed back; serving sessions from memory");
                }
                while let Ok(Some(change)) = listener.try_recv().await {
                    cache.apply(change.payload());
                }
                // `None` or an error: the connection is gone, notifications may be lost.
                cache.set_trusted(false);
                lost_before = true;
                tracing::warn!(
                    "session cache: change feed lost; reading every session from the database until it is back"
                );
            }
            Err(err) => {
                tracing::debug!(error = %err, "session cache: subscribing to the change feed failed");
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn subscribe(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is reported, not quietly replaced: every loss goes through
    // `set_trusted(false)` and a new subscription.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
