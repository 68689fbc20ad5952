//! The threads password hashes run on: one per hashing slot, scheduled so that they take only
//! the CPU time no request thread wants.
//!
//! A login flood keeps every core busy hashing. On Linux the hashing threads run under
//! `SCHED_IDLE`: a request thread that wakes up takes the core at once. A lower nice value is
//! not enough: the scheduler still lets a running hash finish its time slice (milliseconds)
//! before a woken request runs. Measured (bench/RESULTS.md, scenario 3) with two threads
//! hashing beside the paced `GET /users/me/` load: p99 1.6 to 3.2 ms at nice 10, 0.6 to 1.3 ms
//! (as without them) under `SCHED_IDLE`.
//!
//! The price: while request threads keep every core busy, hashes wait, and a login whose hash
//! is not done within `PASSWORD_HASH_MAX_WAIT_MS` gets 503; signed-in traffic keeps its
//! latency. Where
//! `SCHED_IDLE` is refused, the threads fall back to nice 10. The threads end when the last
//! `PasswordHasher` clone is dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, anyhow};

/// How much lower than the rest of the process hashing runs where `SCHED_IDLE` is refused
/// (the `nice` increment).
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
    lower_priority();
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return; // every handle is gone
        };
        // The thread outlives a panicking job; its caller sees the error.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let idle = libc::sched_param { sched_priority: 0 };
        // On Linux both calls with pid 0 apply to the calling thread only.
        // SAFETY: plain system calls on the current thread; `idle` outlives the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) } == 0 {
            return;
        }
        // SAFETY: as above.
        let changed = unsafe {
            let current = libc::getpriority(libc::PRIO_PROCESS, 0);
            libc::setpriority(libc::PRIO_PROCESS, 0, current + NICE_INCREMENT)
        };
        if changed != 0 {
            tracing::warn!("cannot lower the priority of a password hashing thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn hashing_runs_only_when_no_request_thread_wants_the_core() {
        let threads = HashingThreads::start(1).unwrap();
        // SAFETY: reads the calling thread's scheduling policy.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let theirs = threads.run(move || Ok(policy())).await.unwrap();
        assert_eq!(theirs, libc::SCHED_IDLE);
    }
}
