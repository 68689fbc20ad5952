//! The threads password hashes run on: one per hashing slot, at a lower scheduling priority
//! (nice 10) and with longer time slices than the threads that serve requests. The threads
//! end when the last `PasswordHasher` clone is dropped.
//!
//! A login flood keeps every core busy hashing; two settings keep other requests answered
//! meanwhile (bench/RESULTS.md, scenario 3):
//! - nice 10 decides how much each gets: request threads get about nine tenths of a contended
//!   core, and hashing still gets all of an idle one;
//! - the time slices decide who runs first (`crate::scheduling`, Linux 6.12 and later): a
//!   request woken during a hash takes the core at once instead of waiting for the rest of
//!   the hash's slice. With nice 10 alone that wait made the flooded p99 about 2.2 ms against
//!   0.6 quiet; with the slices too, 0.7 to 1.5 ms against 0.4.
//!
//! Not `SCHED_IDLE`, though it too lets requests go first: it gives hashes nothing while any
//! other process keeps the cores busy. With two busy loops beside the service, every login was
//! refused (503 after the 2 s wait bound), against answered in 0.2 s at nice 10.
//! `SCHED_BATCH` at nice 10 measured no better than nice 10 alone.
//!
//! A thread that has had no job for `IDLE_AFTER` runs the `when_idle` it was started with
//! (the password hasher wipes Argon2's working memory there). Under load the next job comes
//! sooner, and the work put off is skipped when the job makes it moot.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use anyhow::{Context, anyhow};
use flume::{Receiver, RecvTimeoutError, Sender};

/// How much lower than the rest of the process hashing runs (the `nice` increment).
const NICE_INCREMENT: i32 = 10;

/// How long a thread waits for its next job before it counts as idle. Under a login flood the
/// next job arrives within microseconds of a slot coming free.
pub const IDLE_AFTER: Duration = Duration::from_millis(5);

type Job = Box<dyn FnOnce() + Send>;

/// A handle on the hashing threads; cheap to clone.
#[derive(Clone)]
pub struct HashingThreads {
    jobs: Sender<Job>,
}

impl HashingThreads {
    /// Starts `count` threads; each runs `when_idle` once it has waited `IDLE_AFTER` for a job.
    pub fn start(
        count: usize,
        when_idle: impl Fn() + Clone + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (jobs, queue) = flume::unbounded::<Job>();
        for n in 0..count {
            let queue = queue.clone();
            let when_idle = when_idle.clone();
            std::thread::Builder::new()
                .name(format!("gatehouse-hash-{n}"))
                .spawn(move || work(&queue, when_idle))
                .context("starting a password hashing thread")?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on a hashing thread. The caller bounds how many run at once (one per
    /// thread, holding its slot inside `work`), so jobs do not queue here.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                // Nobody waits for the result any more (the request was cancelled).
                if done.is_closed() {
                    return;
                }
                let _ = done.send(work());
            }))
            .map_err(|_| anyhow!("the password hashing threads have stopped"))?;
        // A panic in `work` drops `done` unsent.
        result.await.context("password hashing panicked")?
    }
}

fn work(queue: &Receiver<Job>, when_idle: impl Fn()) {
    crate::scheduling::lower_for_hashing(NICE_INCREMENT);
    loop {
        let job = match queue.recv_timeout(IDLE_AFTER) {
            Err(RecvTimeoutError::Timeout) => {
                // A panic here would end the thread and leave the rest of the queue unserved.
                let _ = catch_unwind(AssertUnwindSafe(&when_idle));
                queue.recv().ok()
            }
            job => job.ok(),
        };
        let Some(job) = job else {
            return; // every handle is gone
        };
        // The thread outlives a panicking job; its caller sees the error.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::scheduling;

    #[tokio::test]
    async fn runs_work_and_survives_a_panic() {
        let threads = HashingThreads::start(1, || ()).unwrap();
        assert_eq!(threads.run(|| Ok(6 * 7)).await.unwrap(), 42);
        let panicked = threads.run::<()>(|| panic!("boom")).await;
        assert!(panicked.is_err());
        // The one thread is still there.
        assert_eq!(
            threads.run(|| Ok("still here")).await.unwrap(),
            "still here"
        );
    }

    #[tokio::test]
    async fn runs_when_idle_after_waiting_not_between_queued_jobs() {
        let idles = Arc::new(AtomicUsize::new(0));
        let (idled, idle) = std::sync::mpsc::channel();
        let threads = HashingThreads::start(1, {
            let idles = idles.clone();
            move || {
                idles.fetch_add(1, Ordering::SeqCst);
                let _ = idled.send(());
            }
        })
        .unwrap();
        let wait = Duration::from_secs(10);
        idle.recv_timeout(wait)
            .expect("a thread without a job went idle");

        // The first job holds the thread until the second is queued behind it.
        let queue = threads.jobs.clone();
        let seen_by_first = idles.clone();
        let first = threads.run(move || {
            let deadline = Instant::now() + wait;
            while queue.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(seen_by_first.load(Ordering::SeqCst))
        });
        let seen_by_second = idles.clone();
        let second = threads.run(move || Ok(seen_by_second.load(Ordering::SeqCst)));
        let (first, second) = tokio::join!(first, second);
        assert_eq!((first.unwrap(), second.unwrap()), (1, 1));

        idle.recv_timeout(wait)
            .expect("the thread went idle again after its jobs");
        assert_eq!(idles.load(Ordering::SeqCst), 2);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_runs_at_a_lower_priority() {
        let threads = HashingThreads::start(1, || ()).unwrap();
        let ours = scheduling::current_thread();
        let theirs = threads
            .run(|| Ok(scheduling::current_thread()))
            .await
            .unwrap();
        assert_eq!(theirs.nice, (ours.nice + NICE_INCREMENT).min(19));
        match theirs.slice {
            Some(slice) => assert_eq!(slice, scheduling::HASHING_SLICE),
            None => eprintln!("skipped the slice: this kernel does not report slices asked for"),
        }
    }
}
