//! Password hashing with Argon2id, and verification of legacy bcrypt hashes (the tutorial's
//! passlib stores `$2b$`), which are upgraded at the next successful login.
//!
//! Hashing is CPU-bound and slow on purpose, so it runs on its own threads, one per core and
//! at a lower priority (`hashing_threads`), behind a semaphore with one permit per thread: a
//! flood of logins queues there instead of starving the async workers that serve every other
//! request. The queue is bounded in time and length:
//! a request that would wait longer than `max_wait` gets `HasherBusy` (a 503 with
//! `Retry-After`), so a login flood cannot pile up memory and latency for everyone else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::hashing_threads::HashingThreads;
use crate::config::HashParams;
use crate::domain::Password;

/// At most this many requests per slot queue for one; more are refused at once.
const QUEUE_PER_SLOT: usize = 64;

/// Every hashing slot stayed busy for longer than a request may wait: try again shortly.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("all password hashing slots are busy")]
pub struct HasherBusy;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Mismatch,
    Match,
    /// The password is right but the hash is bcrypt or has old Argon2 parameters.
    MatchNeedsRehash,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    slots: Arc<Semaphore>,
    slot_count: usize,
    threads: HashingThreads,
    /// Hashes queued for a slot, for `/metrics`.
    waiting: Arc<AtomicUsize>,
    /// How long a request may wait for a slot.
    max_wait: Duration,
    /// Password checks run so far (real and dummy alike).
    verifications: Arc<AtomicU64>,
    /// A real hash of a random password: unknown users are verified against it so a login
    /// takes the same time whether or not the account exists.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(params: HashParams) -> anyhow::Result<Self> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| anyhow!("invalid Argon2 parameters: {e}"))?;
        let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
        return_large_blocks_on_free();
        let dummy_password = uuid::Uuid::new_v4().to_string();
        let dummy_hash = hash_now(&params, &dummy_password)?;
        Ok(Self {
            params,
            slots: Arc::new(Semaphore::new(slots)),
            slot_count: slots,
            threads: HashingThreads::start(slots)?,
            waiting: Arc::new(AtomicUsize::new(0)),
            max_wait: Duration::from_secs(2),
            verifications: Arc::new(AtomicU64::new(0)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// How long a request may wait for a hashing slot before `HasherBusy`.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Hashes a new password as a PHC string (`$argon2id$v=19$m=...`).
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let params = self.params.clone();
        let password = password.clone();
        self.run_bounded(move || hash_now(&params, password.expose()))
            .await
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no user.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> anyhow::Result<Verification> {
        let known_user = stored.is_some();
        let stored = stored.unwrap_or(&self.dummy_hash).to_string();
        let params = self.params.clone();
        let password = password.clone();
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let outcome = self
            .run_bounded(move || verify_now(&params, password.expose(), &stored))
            .await?;
        Ok(if known_user {
            outcome
        } else {
            Verification::Mismatch
        })
    }

    /// How many hashes may run at once (one per core).
    pub fn slots(&self) -> usize {
        self.slot_count
    }

    /// How many hashes are running now.
    pub fn slots_in_use(&self) -> usize {
        self.slot_count
            .saturating_sub(self.slots.available_permits())
    }

    /// How many password checks have run, for a known user or against the dummy hash.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// How many hashes are waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    async fn run_bounded<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let permit = {
            // Counted down on drop, so a request cancelled while queued leaves the queue.
            let queued = WaitingGuard::enter(&self.waiting);
            if queued.0.load(Ordering::Relaxed) > self.slot_count * QUEUE_PER_SLOT {
                return Err(HasherBusy.into());
            }
            match tokio::time::timeout(self.max_wait, self.slots.clone().acquire_owned()).await {
                Ok(permit) => permit.context("hasher closed")?,
                Err(_) => return Err(HasherBusy.into()),
            }
        };
        // The slot goes with the hash, not with the request: a client that hangs up leaves its
        // hash running, and the slot stays taken until it ends, so the next request waits for
        // the slot (bounded) instead of queueing behind it on the thread (unbounded).
        self.threads
            .run(move || {
                let _permit = permit;
                work()
            })
            .await
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Each hash allocates `memory_kib` (19 MiB by default). glibc raises its mmap threshold after
/// the first such block is freed, and from then on keeps the blocks in per-thread arenas: a
/// login flood, hashed on changing blocking-pool threads (before `hashing_threads`), grew the
/// process past 500 MB
/// (bench/RESULTS.md, scenario 4). A fixed threshold makes every block an mmap that is
/// returned to the system when the hash ends.
fn return_large_blocks_on_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_now(params: &Params, password: &str) -> anyhow::Result<String> {
    argon2(params)
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow!("hashing failed: {e}"))
}

fn verify_now(params: &Params, password: &str, stored: &str) -> anyhow::Result<Verification> {
    if stored.starts_with("$2") {
        // bcrypt only reads the first 72 bytes; longer passwords are refused by the crate.
        return Ok(match bcrypt::verify(password, stored) {
            Ok(true) => Verification::MatchNeedsRehash,
            _ => Verification::Mismatch,
        });
    }
    let parsed = match PasswordHash::new(stored) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "stored password hash is not a PHC string");
            return Ok(Verification::Mismatch);
        }
    };
    if argon2(params)
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Ok(Verification::Mismatch);
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == params.m_cost()
                && p.t_cost() == params.t_cost()
                && p.p_cost() == params.p_cost()
        });
    Ok(if current {
        Verification::Match
    } else {
        Verification::MatchNeedsRehash
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashParams {
        HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn pw(s: &str) -> Password {
        Password::attempt(s.into()).unwrap()
    }

    #[tokio::test]
    async fn a_cancelled_hash_keeps_its_slot_until_it_ends() {
        let hasher = PasswordHasher::new(cheap()).unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let slow = hasher.run_bounded(move || {
            let _ = released.recv();
            Ok(())
        });
        // The request gives up (its client hung up) while its hash is still running.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), slow).await;
        assert!(cancelled.is_err());
        assert_eq!(hasher.slots_in_use(), 1, "the running hash keeps its slot");
        release.send(()).unwrap();
        for _ in 0..500 {
            if hasher.slots_in_use() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the slot was not given back when the hash ended");
    }

    #[tokio::test]
    async fn argon2id_round_trip() {
        let hasher = PasswordHasher::new(cheap()).unwrap();
        let hash = hasher.hash(&pw("correct horse")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert_eq!(
            hasher
                .verify(&pw("correct horse"), Some(&hash))
                .await
                .unwrap(),
            Verification::Match
        );
        assert_eq!(
            hasher
                .verify(&pw("wrong horse"), Some(&hash))
                .await
                .unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn old_parameters_ask_for_rehash() {
        let old = PasswordHasher::new(cheap()).unwrap();
        let hash = old.hash(&pw("correct horse")).await.unwrap();
        let new = PasswordHasher::new(HashParams {
            iterations: 2,
            ..cheap()
        })
        .unwrap();
        assert_eq!(
            new.verify(&pw("correct horse"), Some(&hash)).await.unwrap(),
            Verification::MatchNeedsRehash
        );
    }

    #[tokio::test]
    async fn passlib_bcrypt_hash_verifies_and_asks_for_rehash() {
        // PHP writes bcrypt hashes as `$2y$`; passlib writes `$2b$` (see the integration tests).
        let hasher = PasswordHasher::new(cheap()).unwrap();
        let stored = bcrypt::hash("password", 4).unwrap().replace("$2b$", "$2y$");
        assert_eq!(
            hasher.verify(&pw("password"), Some(&stored)).await.unwrap(),
            Verification::MatchNeedsRehash
        );
        assert_eq!(
            hasher.verify(&pw("Password"), Some(&stored)).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn a_request_that_would_wait_too_long_is_refused_as_busy() {
        let hasher = PasswordHasher::new(cheap())
            .unwrap()
            .with_max_wait(Duration::from_millis(20));
        let all = u32::try_from(hasher.slots()).unwrap();
        let held = hasher.slots.clone().acquire_many_owned(all).await.unwrap();
        let err = hasher.verify(&pw("whatever1"), None).await.unwrap_err();
        assert!(err.is::<HasherBusy>(), "{err:?}");
        assert_eq!(hasher.waiting(), 0, "the refused request left the queue");
        drop(held);
        assert!(hasher.verify(&pw("whatever1"), None).await.is_ok());
        assert_eq!(hasher.verifications(), 2);
    }

    #[tokio::test]
    async fn unknown_user_never_matches() {
        let hasher = PasswordHasher::new(cheap()).unwrap();
        assert_eq!(
            hasher.verify(&pw("anything at all"), None).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn garbage_hash_is_a_mismatch_not_an_error() {
        let hasher = PasswordHasher::new(cheap()).unwrap();
        assert_eq!(
            hasher
                .verify(&pw("whatever1"), Some("not-a-hash"))
                .await
                .unwrap(),
            Verification::Mismatch
        );
    }
}
