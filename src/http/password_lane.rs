//! Logins and sign-ups, the requests that anyone may send to make the service hash a password,
//! run on async threads of their own, apart from the workers that serve every other request (a
//! bulkhead). Changing a password also hashes, but needs a session or an emailed link first,
//! and stays on the shared workers, as does a refresh-token grant, which checks no password.
//!
//! A login is a hash on a hashing thread (`auth::hashing_threads`) and around it about a
//! millisecond of other work: the account's lookup, the session's transaction, the answer.
//! Under a login flood that work, on the shared workers, kept them busy and woke the database
//! server's processes, and signed-in requests queued behind it: a kernel trace of the flood
//! found the workers waiting for a core about ten times as long as those of a server
//! without logins (bench/RESULTS.md, scenario 3). On a lane of their own the flood's logins
//! wait for each other, and the workers stay free for everyone else.
//!
//! Only the handler runs on the lane: reading the request, its rate limit and its extraction
//! stay on the shared workers, which is where a flood refused with 429 is refused.
//!
//! The lane has database connections of its own (`Store::with_own_connections`), which the
//! database server shows as `gatehouse-login`. A PostgreSQL connection reports its readiness
//! through the runtime that opened it, and with one pool for both, which runtime that was
//! depended on which request happened to open it: a login's answer could wake a shared worker
//! first, and a signed-in request's answer the lane, behind the flood's work. Measured, the
//! difference is small (bench/RESULTS.md): the bulkhead now holds by construction, not by the
//! pool's history. The server closes these connections before the lane stops, since closing
//! them needs the lane's runtime to say goodbye to the database.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use tokio::runtime::{Handle, Runtime};
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::store::Store;

/// Hashing threads per lane thread: a login's other work is about a fifteenth of its hash, so
/// one lane thread keeps up with the logins of several hashing threads.
const HASHING_THREADS_PER_LANE_THREAD: usize = 8;

/// Database connections beyond one per hashing thread. A login holds one only to read the
/// account and to start the session, not while it waits for or runs its hash: one per
/// hashing thread and a few more keep up with what the hashing threads can verify.
const SPARE_CONNECTIONS: u32 = 2;

/// A handle on the lane; cheap to clone. Its threads stop when the last clone is dropped.
#[derive(Clone)]
pub struct PasswordLane {
    handle: Handle,
    store: Arc<dyn Store>,
    _runtime: Arc<Owner>,
}

/// Stops the lane's runtime without waiting for its tasks: it may be dropped from inside an
/// async context, where a runtime may not block.
struct Owner(Option<Runtime>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl PasswordLane {
    /// Starts a lane sized for `hashing_threads` hashing threads, with connections of its own
    /// to `store`'s database. Its threads take the scheduling settings of the calling thread
    /// (`crate::scheduling`).
    pub fn start(hashing_threads: usize, store: &Arc<dyn Store>) -> anyhow::Result<Self> {
        let threads = hashing_threads
            .div_ceil(HASHING_THREADS_PER_LANE_THREAD)
            .max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("gatehouse-login")
            .enable_all()
            .build()
            .context("starting the login threads")?;
        let per_hashing_thread = u32::try_from(hashing_threads).unwrap_or(u32::MAX);
        // Kept open: up to one per hashing thread, never the spares. While the database is
        // down, sqlx holds a slot for each connection it tries to reopen (for up to minutes,
        // backing off), so the spares are what logins have left when it comes back.
        let store = store.clone().with_own_connections(
            runtime.handle(),
            "login",
            per_hashing_thread.saturating_add(SPARE_CONNECTIONS),
            per_hashing_thread,
        );
        Ok(Self {
            handle: runtime.handle().clone(),
            store,
            _runtime: Arc::new(Owner(Some(runtime))),
        })
    }

    /// The store to use in work run on the lane: its own connections to the database.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs `work` on the lane, in the caller's tracing span, and waits for it; an error only
    /// if the lane has stopped. Dropping the returned future (the client went away) cancels
    /// the work, as it would on the shared workers, so an abandoned login does not go on to
    /// hash. A panic in `work` goes on in the caller. Handlers go through
    /// `AppState::on_password_lane`, which gives the work the lane's store.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        // In the request's span, so that what the work logs names its request.
        let work = work.instrument(tracing::Span::current());
        match AbortOnDrop(self.handle.spawn(work)).await {
            Ok(outcome) => Ok(outcome),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the lane is stopping with the service.
            Err(_) => Err(Error::Unavailable),
        }
    }
}

/// A task's outcome, aborting the task if the caller stops waiting for it.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;
    use tokio::time::timeout;

    use super::*;
    use crate::store::{self, ConnectOptions};

    const PATIENCE: Duration = Duration::from_secs(10);

    /// A lane beside an in-memory database, which these tests do not read.
    async fn lane(hashing_threads: usize) -> PasswordLane {
        let store = store::connect(&ConnectOptions {
            url: "sqlite::memory:".into(),
            acquire_timeout: PATIENCE,
            session_cache_entries: 0,
            min_connections: 0,
            migrations: store::Migrations::Apply,
        })
        .await
        .unwrap();
        PasswordLane::start(hashing_threads, &store).unwrap()
    }

    #[tokio::test]
    async fn runs_the_work_on_a_lane_thread() {
        let lane = lane(2).await;
        let thread = lane
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(thread.as_deref(), Some("gatehouse-login"));
    }

    #[tokio::test]
    async fn dropping_the_wait_cancels_the_work() {
        /// Tells when the work's future is dropped, which is how an aborted task ends.
        struct Dropped(Option<oneshot::Sender<()>>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.take().map(|tx| tx.send(()));
            }
        }
        let lane = lane(1).await;
        let (started_tx, started) = oneshot::channel();
        let (dropped_tx, dropped) = oneshot::channel();
        let work = async move {
            let _guard = Dropped(Some(dropped_tx));
            let _ = started_tx.send(());
            std::future::pending::<()>().await;
        };
        let waiting = tokio::spawn({
            let lane = lane.clone();
            async move { lane.run(work).await }
        });
        timeout(PATIENCE, started).await.unwrap().unwrap();
        waiting.abort();
        timeout(PATIENCE, dropped)
            .await
            .expect("the work is cancelled with the wait")
            .unwrap();
    }

    #[tokio::test]
    #[should_panic(expected = "a bug in the handler")]
    async fn a_panic_goes_on_in_the_caller() {
        let lane = lane(1).await;
        let _ = lane.run(async { panic!("a bug in the handler") }).await;
    }

    #[tokio::test]
    async fn a_stopped_lane_answers_unavailable() {
        let lane = lane(1).await;
        // The same threads, without a share in keeping them running.
        let orphan = PasswordLane {
            handle: lane.handle.clone(),
            store: lane.store.clone(),
            _runtime: Arc::new(Owner(None)),
        };
        drop(lane);
        let outcome = orphan.run(async { 42 }).await;
        assert!(matches!(outcome, Err(Error::Unavailable)), "{outcome:?}");
    }
}
