//! Building the service from a `Config` and serving it until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::{Router, ServiceExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::auth::throttle::CheckQueue;
use crate::auth::{PasswordHasher, TokenKeys};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::email::Mailer;
use crate::housekeeping;
use crate::http::{self, AppState, PasswordLane};
use crate::metrics::Metrics;
use crate::store::{self, ConnectOptions};

/// A service bound to its port, ready to run.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    /// The service with the embedding application's routes (`with_routes`), if it has any.
    app: Option<http::App>,
}

impl Server {
    /// Opens the database (running migrations), prepares the keys and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like `build`, acting on the given clock (tests move a `ManualClock` to expire things).
    pub async fn build_with_clock(
        mut config: Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let store = store::connect(&ConnectOptions {
            url: config.database_url.clone(),
            acquire_timeout: config.db_acquire_timeout,
            session_cache_entries: config.session_cache_entries,
            min_connections: config.db_min_connections,
            migrations: store::Migrations::Apply,
        })
        .await?;
        let hasher =
            PasswordHasher::new(config.hash_params)?.with_max_wait(config.abuse.hash_max_wait);
        let password_lane = PasswordLane::start(hasher.slots(), &store)?;
        let tokens = Arc::new(TokenKeys::from_config(
            &config.secret_key,
            &config.jwt,
            config.access_token_ttl,
        )?);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        // Port 0 means "any free port": links and origin checks need the real one.
        let bound = listener.local_addr()?;
        if config.public_url.port() == Some(0) {
            let _ = config.public_url.set_port(Some(bound.port()));
        }
        if config.production && !config.is_https() {
            tracing::warn!(public_url = %config.public_url, "GATEHOUSE_ENV=production with a PUBLIC_URL that is not https: cookies go without Secure and emailed links over plain http; set PUBLIC_URL=https://...");
        }
        let outbox = config.data_dir.join("outbox");
        if config.production && config.mail.smtp_url.is_none() {
            tracing::warn!(outbox = %outbox.display(), "GATEHOUSE_ENV=production without SMTP_URL: emails (reset links, confirmations) are written to the outbox folder and nobody receives them; set SMTP_URL");
        }
        let background = TaskTracker::new();
        let mailer = Mailer::new(
            config.mail.smtp_url.as_deref(),
            &config.mail.from,
            outbox,
            !config.production,
            background.clone(),
        )?;
        let state = AppState {
            store,
            hasher,
            tokens,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()),
            clock,
            limiter: Arc::new(http::rate_limit::RateLimiter::new()),
            mailer,
            password_lane,
            password_checks: CheckQueue::default(),
            background,
        };
        Ok(Self {
            listener,
            state,
            app: None,
        })
    }

    /// Serves `routes` beside Gatehouse's own, behind the same layers (`http::app_with`), with
    /// everything `run` gives them: the client's address (rate limits and the audit trail
    /// need it), housekeeping, graceful shutdown. Called again, the last routes replace the
    /// earlier ones. A route Gatehouse serves too panics here, before the service starts.
    pub fn with_routes(mut self, routes: Router<AppState>) -> Self {
        self.app = Some(http::app_with(self.state.clone(), routes));
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests finish
    /// for up to `SHUTDOWN_GRACE`, and closes the database connections.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let background = self.state.background.clone();
        // Kept until its connections are closed: they need the lane's runtime to say goodbye
        // to the database.
        let password_lane = self.state.password_lane.clone();
        // Stops when dropped: at the end of this function, or with it.
        let housekeeping = self.state.config.housekeeping.interval.map(|interval| {
            housekeeping::spawn(
                store.clone(),
                self.state.clock.clone(),
                self.state.metrics.clone(),
                housekeeping::Policy::of(&self.state.config),
                interval,
            )
        });
        let app = self.app.unwrap_or_else(|| http::app(self.state));
        let (stopping, mut stop_requested) = watch::channel(false);
        let serve = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(true);
        });
        let grace_expired = async move {
            if stop_requested.wait_for(|stop| *stop).await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = tokio::select! {
            served = serve => served.context("serving HTTP"),
            () = grace_expired => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running after the grace period; stopping anyway");
                Ok(())
            }
        };
        drop(housekeeping);
        finish_background_work(&background).await;
        let lane_store = password_lane.store().clone();
        let close_pools = async {
            // On SQLite the lane uses the same store.
            if Arc::ptr_eq(&store, &lane_store) {
                store.close().await;
            } else {
                tokio::join!(store.close(), lane_store.close());
            }
        };
        if tokio::time::timeout(POOL_CLOSE_LIMIT, close_pools)
            .await
            .is_err()
        {
            tracing::warn!("database connections still in use; exiting without waiting for them");
        }
        drop(password_lane);
        tracing::info!("stopped");
        served
    }
}

/// Lets the work requests left running finish (emailed links still being looked up, stored or
/// sent, with their retries), for up to `BACKGROUND_GRACE`: a reset answered just before a
/// deploy must still be mailed. What is still running then is said and abandoned.
async fn finish_background_work(background: &TaskTracker) {
    background.close();
    if tokio::time::timeout(BACKGROUND_GRACE, background.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            abandoned = background.len(),
            "background work (emails) still running after the grace period; stopping anyway"
        );
    }
}

/// How long background work may run once the requests are done.
const BACKGROUND_GRACE: Duration = Duration::from_secs(15);

/// How long in-flight requests may run after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long closing the database pool may wait for connections still in use.
const POOL_CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
