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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, anyhow};

/// How much lower than the rest of the process hashing runs (the `nice` increment).
const NICE_INCREMENT: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A handle on the hashing threads; cheap to clone.
#[derive(Clone)]
pub struct HashingThreads {
    jobs: Sender<Job>,
}

impl HashingThreads {
    pub fn start(count: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("gatehouse-hash-{n}"))
                .spawn(move || work(&queue))
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

fn work(queue: &Mutex<Receiver<Job>>) {
    crate::scheduling::lower_for_hashing(NICE_INCREMENT);
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return; // every handle is gone
        };
        // The thread outlives a panicking job; its caller sees the error.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduling;

    #[tokio::test]
    async fn runs_work_and_survives_a_panic() {
        let threads = HashingThreads::start(1).unwrap();
        assert_eq!(threads.run(|| Ok(6 * 7)).await.unwrap(), 42);
        let panicked = threads.run::<()>(|| panic!("boom")).await;
        assert!(panicked.is_err());
        // The one thread is still there.
        assert_eq!(
            threads.run(|| Ok("still here")).await.unwrap(),
            "still here"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_runs_at_a_lower_priority() {
        let threads = HashingThreads::start(1).unwrap();
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
