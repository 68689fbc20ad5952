//! Password hashing with Argon2id, and verification of legacy bcrypt hashes (the tutorial's
//! passlib stores `$2b$`), which are upgraded at the next successful login.
//!
//! Hashing is CPU-bound and slow on purpose, so it runs on its own threads, one per core and
//! at a lower priority (`hashing_threads`), behind a semaphore with one permit per thread: a
//! flood of logins queues there instead of starving the async workers that serve every other
//! request. The queue is bounded in time and length:
//! a request that would wait longer than `max_wait` gets `HasherBusy` (a 503 with
//! `Retry-After`), so a login flood cannot pile up memory and latency for everyone else.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::{Output, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use super::hashing_threads::HashingThreads;
use super::working_memory::WorkingMemory;
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
        let params = argon2_params(&params)?;
        let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
        return_large_blocks_on_free();
        let dummy_password = uuid::Uuid::new_v4().to_string();
        let dummy_hash = hash_now(&params, &dummy_password)?;
        // Only the hashing threads keep working memory; this thread hashes once.
        WORKING_MEMORY.with_borrow_mut(WorkingMemory::release);
        Ok(Self {
            params,
            slots: Arc::new(Semaphore::new(slots)),
            slot_count: slots,
            threads: HashingThreads::start(slots, wipe_working_memory)?,
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

/// Argon2 needs `memory_kib` (19 MiB by default) per hash. glibc raises its mmap threshold
/// after the first such block is freed, and from then on keeps the blocks in per-thread arenas:
/// a login flood, hashed on changing blocking-pool threads (before `hashing_threads`), grew the
/// process past 500 MB (bench/RESULTS.md, scenario 4). Each hashing thread now keeps one block
/// (`WORKING_MEMORY`); a fixed threshold still returns any other large block (a hash with
/// bigger parameters, the startup hash) to the system when it is freed.
fn return_large_blocks_on_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The most working memory a hashing thread keeps between hashes (64 MiB, in 1 KiB blocks).
const KEEP_AT_MOST_BLOCKS: usize = 64 * 1024;

/// The most memory a stored hash may ask for (1 GiB): hashes can arrive from an imported
/// database, and one naming terabytes must fail its login, not exhaust the machine.
pub const MAX_STORED_MEMORY_KIB: u32 = 1024 * 1024;

thread_local! {
    /// Argon2's working memory (19 MiB with the default parameters, in 20 MiB of whole huge
    /// pages), kept by each hashing thread from one hash to the next. A fresh allocation per
    /// hash was mapped, faulted in page by page and unmapped every time: about 40% of login
    /// throughput under load (bench/RESULTS.md, scenario 2).
    static WORKING_MEMORY: RefCell<WorkingMemory> = const { RefCell::new(WorkingMemory::new()) };
}

/// Zeroes what the hashes on this thread left in its working memory.
fn wipe_working_memory() {
    WORKING_MEMORY.with_borrow_mut(WorkingMemory::wipe);
}

/// Runs `argon2` with this thread's working memory (grown when needed). The memory is wiped
/// later: once the thread is idle (`wipe_working_memory`), and when the thread ends.
fn with_working_memory<T>(
    argon2: &Argon2<'_>,
    params: &Params,
    run: impl FnOnce(&Argon2<'_>, &mut [Block]) -> T,
) -> anyhow::Result<T> {
    WORKING_MEMORY.with_borrow_mut(|memory| {
        let blocks = memory.blocks_for(params.block_count())?;
        let result = run(argon2, blocks);
        if memory.blocks().len() > KEEP_AT_MOST_BLOCKS {
            // An old hash with far bigger parameters: verified once, not kept for.
            memory.release();
        }
        Ok(result)
    })
}

/// The raw Argon2 output of `password` with `salt`, `out_len` bytes long.
fn argon2_output(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    out_len: usize,
) -> anyhow::Result<Vec<u8>> {
    let mut out = vec![0u8; out_len];
    with_working_memory(argon2, params, |argon2, memory| {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
    })?
    .map_err(|e| anyhow!("hashing failed: {e}"))?;
    Ok(out)
}

/// The Argon2 parameters of the configured costs (default output length).
fn argon2_params(costs: &HashParams) -> anyhow::Result<Params> {
    Params::new(costs.memory_kib, costs.iterations, costs.parallelism, None)
        .map_err(|e| anyhow!("invalid Argon2 parameters: {e}"))
}

/// How long an output `hash_now` writes with `params`.
fn output_len(params: &Params) -> usize {
    params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_now(params: &Params, password: &str) -> anyhow::Result<String> {
    let salt = Salt::generate();
    let output = argon2_output(&argon2(params), params, password, &salt, output_len(params))?;
    argon2id_phc(params, Some(Version::V0x13), salt, &output)
}

/// The PHC string of an Argon2id `output` made with `params` and `salt`; `version` is what the
/// string says (`None` writes no `v=`, which readers take as 0x10).
fn argon2id_phc(
    params: &Params,
    version: Option<Version>,
    salt: Salt,
    output: &[u8],
) -> anyhow::Result<String> {
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: version.map(Into::into),
        params: params
            .try_into()
            .map_err(|e| anyhow!("Argon2 parameters: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(output).map_err(|e| anyhow!("Argon2 output: {e}"))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` gives the hash `stored` holds, with the algorithm, version and
/// parameters written in it (so hashes made with older parameters still verify).
fn argon2_matches(password: &str, stored: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm.as_str()) else {
        return false;
    };
    let version = match stored.version.map(Version::try_from) {
        // The reference implementation reads a hash without `v=` as version 0x10 (what it
        // wrote before version 0x13 existed); the Rust crate's default would be 0x13.
        None => Version::V0x10,
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(stored) else {
        return false;
    };
    if params.m_cost() > MAX_STORED_MEMORY_KIB {
        tracing::warn!(
            memory_kib = params.m_cost(),
            "stored password hash asks for more Argon2 memory than allowed; treated as a mismatch"
        );
        return false;
    }
    let argon2 = Argon2::new(algorithm, version, params.clone());
    argon2_output(&argon2, &params, password, salt, expected.len())
        .ok()
        .and_then(|out| Output::new(&out).ok())
        // `Output` compares in constant time.
        .is_some_and(|computed| &computed == expected)
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
    if !argon2_matches(password, &parsed) {
        return Ok(Verification::Mismatch);
    }
    Ok(if made_as_today(&parsed, params) {
        Verification::Match
    } else {
        Verification::MatchNeedsRehash
    })
}

/// Whether a stored hash is what `hash_now` would write with `params`: the same algorithm,
/// version, costs, output length and at least as long a salt. Any other hash that matches is
/// replaced at the login.
fn made_as_today(stored: &PasswordHash, params: &Params) -> bool {
    stored.algorithm == Algorithm::Argon2id.ident()
        && stored.version == Some(Version::V0x13.into())
        && stored
            .hash
            .as_ref()
            .is_some_and(|hash| hash.len() == output_len(params))
        && stored
            .salt
            .as_ref()
            .is_some_and(|salt| salt.len() >= Salt::RECOMMENDED_LENGTH)
        && Params::try_from(stored).is_ok_and(|p| {
            p.m_cost() == params.m_cost()
                && p.t_cost() == params.t_cost()
                && p.p_cost() == params.p_cost()
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

    /// Made by argon2-cffi (the Python binding of the reference implementation).
    const FOREIGN_HASHES: [&str; 2] = [
        "$argon2id$v=19$m=4096,t=1,p=1$ElDaemXT5kLPZT4dwOLCRg$GPJkGBJAFBMvWkrMeul7QwKpDJqPysN9Ojlea3fQgUI",
        "$argon2id$v=19$m=8192,t=2,p=2$KMsWiL0g0Sj+Sccuu27NBA$/f9DAaaatTvAuiQx8KMZDIutmI+Z9bPzC9OhAr0lxYk",
    ];

    #[test]
    fn hashes_from_the_reference_implementation_verify_with_their_own_parameters() {
        let ours = argon2_params(&cheap()).unwrap();
        for stored in FOREIGN_HASHES {
            assert_eq!(
                verify_now(&ours, "correct horse battery", stored).unwrap(),
                Verification::MatchNeedsRehash,
                "{stored}"
            );
            assert_eq!(
                verify_now(&ours, "correct horse batterY", stored).unwrap(),
                Verification::Mismatch
            );
        }
    }

    #[test]
    fn our_hashes_pass_the_standard_verifier() {
        use argon2::password_hash::PasswordVerifier as _;
        let params = argon2_params(&cheap()).unwrap();
        let stored = hash_now(&params, "correct horse battery").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{stored}"
        );
        let parsed = PasswordHash::new(&stored).unwrap();
        let standard = argon2(&params);
        assert!(
            standard
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        assert!(standard.verify_password(b"wrong", &parsed).is_err());
    }

    #[test]
    fn a_stored_hash_asking_for_absurd_memory_fails_its_login_only() {
        let ours = argon2_params(&cheap()).unwrap();
        let hostile = FOREIGN_HASHES[0].replace("m=4096", "m=4294967295");
        assert_eq!(
            verify_now(&ours, "correct horse battery", &hostile).unwrap(),
            Verification::Mismatch
        );
    }

    #[test]
    fn working_memory_is_wiped_when_idle_with_every_block_a_hash_wrote() {
        let is_zero = |block: &Block| block.as_ref().iter().all(|w| *w == 0);
        let big = argon2_params(&cheap()).unwrap();
        let small = Params::new(big.m_cost() / 2, 1, 1, None).unwrap();
        hash_now(&big, "correct horse battery").unwrap();
        hash_now(&small, "correct horse battery").unwrap();
        WORKING_MEMORY.with_borrow(|memory| {
            assert_eq!(memory.dirty(), big.block_count());
            // Past the smaller hash's blocks, the bigger one's are still there.
            let past_small = &memory.blocks()[small.block_count()..big.block_count()];
            assert!(!past_small.iter().any(is_zero));
        });

        wipe_working_memory();
        WORKING_MEMORY.with_borrow(|memory| {
            assert_eq!(memory.dirty(), 0);
            assert_eq!(memory.blocks().len(), big.block_count());
            assert!(memory.blocks().iter().all(is_zero));
        });
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

    /// A PHC string of `password` with the service's costs but the given salt, output length
    /// and version (`None`: an old hash without `v=`, computed as version 0x10).
    fn phc_made_as(
        password: &str,
        salt: &[u8],
        out_len: usize,
        version: Option<Version>,
    ) -> String {
        let params = argon2_params(&cheap()).unwrap();
        let computed_as = version.unwrap_or(Version::V0x10);
        let argon2 = Argon2::new(Algorithm::Argon2id, computed_as, params.clone());
        let output = argon2_output(&argon2, &params, password, salt, out_len).unwrap();
        argon2id_phc(&params, version, Salt::try_from(salt).unwrap(), &output).unwrap()
    }

    #[tokio::test]
    async fn hashes_made_otherwise_with_the_same_costs_ask_for_rehash() {
        let hasher = PasswordHasher::new(cheap()).unwrap();
        let verify = |stored: String| {
            let hasher = hasher.clone();
            async move { hasher.verify(&pw("correct horse"), Some(&stored)).await }
        };
        const CURRENT: Option<Version> = Some(Version::V0x13);
        let as_today = phc_made_as("correct horse", &[7; 16], 32, CURRENT);
        assert_eq!(verify(as_today).await.unwrap(), Verification::Match);
        for (what, stored) in [
            (
                "short output",
                phc_made_as("correct horse", &[7; 16], 16, CURRENT),
            ),
            (
                "short salt",
                phc_made_as("correct horse", &[7; 8], 32, CURRENT),
            ),
            (
                "no version",
                phc_made_as("correct horse", &[7; 16], 32, None),
            ),
        ] {
            assert_eq!(
                verify(stored).await.unwrap(),
                Verification::MatchNeedsRehash,
                "{what}"
            );
        }
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
