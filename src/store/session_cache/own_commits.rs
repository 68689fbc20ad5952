//! This process's own SQLite commits, told apart from everyone else's.
//!
//! Every commit moves the WAL index header (`WalWatch`), and a move the cache cannot explain
//! empties it. Most commits of this process change nothing a cached session shows (audit events,
//! new sessions), yet under a login flood they emptied the cache before nearly every lookup. So
//! each connection of the pool reports its commits through SQLite's hooks, on its own thread:
//! - the commit hook runs while the connection holds the WAL write lock, so no other connection
//!   can commit meanwhile: it reads the header the commit starts from (`before`);
//! - the update hook notes the rows of `sessions` and `users` that the transaction updated or
//!   deleted;
//! - the WAL hook runs once the commit is in the index and gives the WAL's frame count after
//!   it; it reads the header the commit led to (`after`). Only then is the commit recorded. A
//!   rollback drops what was noted.
//!
//! SQLite reports a commit to the WAL hook only when a statement steps to its end; a statement
//! stopped after its first row commits when it is reset, and its frame count waits for the
//! connection's next statement that ends (the store reads such writes to the end: `sql/mod.rs`).
//! So a commit hook that finds the previous transaction still unreported, with the change
//! counter moved since, marks the connection: its next report may belong to that earlier commit
//! and is dropped, and lookups empty the cache instead of trusting it.
//!
//! A commit hook that cannot read the header marks the connection the same way, since its
//! commit's report must not be taken for a later one's.
//!
//! The WAL hook runs after the write lock is released, so another commit may already have
//! moved the header on. The header it reads is kept as `after` only when it can be no other
//! than the one this commit wrote: its change counter is one past `before` and its frame count
//! is the one the hook reports. The counter moves by one at each commit, under the write lock,
//! and otherwise only when SQLite rebuilds the index after a crash (recovery sets it to 0); a
//! commit adds at least one frame, while a restart of the WAL, by a checkpoint or the next
//! writer, sets the count to 0 and leaves the counter alone. Otherwise the commit is not
//! recorded. The header is read microseconds after the commit (later for a deferred report):
//! only a recovery that brought the counter back to the same value with the same frame count in
//! between could pass for it.
//!
//! A header move is this process's own when a chain of recorded commits, each `after` being the
//! next one's `before`, leads exactly from the header the cache last checked to the current one:
//! the cache then forgets the rows those commits changed and keeps the rest. A commit of ours
//! whose WAL hook has not run yet (or that wrote nothing and never will) is `Landing` while the
//! header is one commit, or one WAL restart, past where it started: that lookup reads the
//! database and stores nothing. Anything else, such as a commit of another process or an
//! unrecorded commit of ours, is `Unknown` and empties the cache as before.
//!
//! Setting `PRAGMA wal_autocheckpoint` on a pool connection would replace our WAL hook with
//! SQLite's: safe, since nothing would be recorded and every commit would empty the cache.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libsqlite3_sys::{SQLITE_OK, sqlite3, sqlite3_wal_checkpoint, sqlite3_wal_hook};
use sqlx::SqliteConnection;
use sqlx::sqlite::{SqliteOperation, SqlitePoolOptions, UpdateHookResult};

use super::wal_watch::{WalHeader, WalWatch, change_counter, frame_count, salt1, salts};

/// A row whose cached copy a commit made stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowChange {
    Session(i64),
    User(i64),
}

/// What happened between two headers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Since {
    /// Only this process's commits, which changed these rows.
    Own(Vec<RowChange>),
    /// A commit of this process is in the index and not yet recorded: trust nothing, keep all.
    Landing,
    /// Anything else: another process's commit, or a chain that cannot be followed.
    Unknown,
}

/// SQLite's own default: its WAL hook, which ours replaces, checkpoints at this many frames.
const AUTOCHECKPOINT_FRAMES: c_int = 1000;
/// Commits kept for the lookups to come; past this nobody looked for long, and the next
/// lookup simply empties the cache.
const MAX_RECORDED: usize = 4096;
/// A commit hook not followed by a WAL hook was a transaction that wrote nothing (or failed);
/// after this long it no longer holds lookups back (they read the database meanwhile).
const LANDING_AT_MOST: Duration = Duration::from_secs(5);

struct Commit {
    before: WalHeader,
    after: WalHeader,
    changes: Vec<RowChange>,
}

/// Whether `header`, read by the WAL hook of a commit that started from `before` and left
/// `frames` frames, is the header that commit wrote (see the module documentation).
fn written_by_commit(before: &WalHeader, frames: u32, header: &WalHeader) -> bool {
    let restarted = salt1(header) == salt1(before).wrapping_add(1);
    frames != 0
        && frame_count(header) == frames
        && change_counter(header) == change_counter(before).wrapping_add(1)
        && (salts(header) == salts(before) || restarted)
}

struct Landing {
    before: WalHeader,
    since: Instant,
}

#[derive(Default)]
struct Log {
    /// Recorded commits, by the change counter they started from.
    commits: HashMap<u32, Commit>,
    /// Per connection, the commit between its commit hook and its WAL hook.
    landing: HashMap<u64, Landing>,
}

impl Log {
    fn record(&mut self, commit: Commit) {
        if self.commits.len() >= MAX_RECORDED {
            self.commits.clear();
        }
        self.commits.insert(change_counter(&commit.before), commit);
    }

    /// Drops the commits older than the header with this counter.
    fn forget_before(&mut self, counter: u32) {
        // Counters wrap: "older" is a negative distance.
        self.commits
            .retain(|from, _| (from.wrapping_sub(counter) as i32) >= 0);
    }
}

/// The commits of this process's connections (one per database file).
#[derive(Default)]
pub(crate) struct OwnCommits {
    log: Mutex<Log>,
    next_connection: AtomicU64,
}

impl OwnCommits {
    fn lock(&self) -> MutexGuard<'_, Log> {
        // Called from SQLite's hooks, which must not panic; a log left half-written by a panic
        // elsewhere is emptied, which only makes the next lookup empty the cache.
        self.log.lock().unwrap_or_else(|poisoned| {
            self.log.clear_poison();
            let mut log = poisoned.into_inner();
            *log = Log::default();
            log
        })
    }

    #[cfg(test)]
    pub(crate) fn landing_is_empty(&self) -> bool {
        self.lock().landing.is_empty()
    }

    /// What happened between `seen` and `now`, two headers read by lookups.
    pub(crate) fn since(&self, seen: &WalHeader, now: &WalHeader) -> Since {
        let mut log = self.lock();
        let mut at = *seen;
        let mut changes = Vec::new();
        for _ in 0..=MAX_RECORDED {
            let Some(commit) = log
                .commits
                .get(&change_counter(&at))
                .filter(|commit| commit.before == at)
            else {
                break;
            };
            changes.extend_from_slice(&commit.changes);
            at = commit.after;
            if at == *now {
                log.forget_before(change_counter(now));
                return Since::Own(changes);
            }
        }
        // One commit past `at`, or the WAL restarted by that commit and not yet written.
        let one_step = change_counter(now) == change_counter(&at).wrapping_add(1)
            || (change_counter(now) == change_counter(&at) && frame_count(now) == 0);
        let landing = one_step
            && log
                .landing
                .values()
                .any(|landing| landing.before == at && landing.since.elapsed() < LANDING_AT_MOST);
        if landing {
            return Since::Landing;
        }
        log.forget_before(change_counter(now));
        Since::Unknown
    }
}

impl WalWatch {
    /// `pool`, with every connection it opens reporting its commits here.
    pub(crate) fn reported_by(self: &Arc<Self>, pool: SqlitePoolOptions) -> SqlitePoolOptions {
        let watch = Arc::clone(self);
        pool.after_connect(move |connection, _| {
            let watch = Arc::clone(&watch);
            Box::pin(async move { watch.follow_commits_of(connection).await })
        })
    }

    /// Reports the commits of `connection`, one of this process's pool, from now on.
    async fn follow_commits_of(
        self: &Arc<Self>,
        connection: &mut SqliteConnection,
    ) -> Result<(), sqlx::Error> {
        let reporter = Arc::new(CommitReporter {
            watch: Arc::clone(self),
            id: self.own().next_connection.fetch_add(1, Ordering::Relaxed),
            state: Mutex::default(),
        });
        let mut handle = connection.lock_handle().await?;
        let wal_hook = WalHookRegistration::register(handle.as_raw_handle(), Arc::clone(&reporter));
        handle.set_update_hook({
            let reporter = Arc::clone(&reporter);
            move |row| reporter.row_changed(&row)
        });
        handle.set_rollback_hook({
            let reporter = Arc::clone(&reporter);
            move || reporter.rolled_back()
        });
        handle.set_commit_hook(move || {
            // The registration lives as long as this hook: sqlx drops both hooks before it
            // closes the connection.
            let _ = &wal_hook;
            reporter.committing();
            true
        });
        Ok(())
    }
}

/// One connection's side: called on its thread by SQLite.
struct CommitReporter {
    watch: Arc<WalWatch>,
    id: u64,
    state: Mutex<ReporterState>,
}

#[derive(Default)]
struct ReporterState {
    /// Rows changed by the transaction under way.
    changes: Vec<RowChange>,
    /// The next WAL hook may report an earlier commit's frame count (module documentation).
    suspect: bool,
}

impl ReporterState {
    /// `leftover`, if any, is a transaction whose commit hook ran and which ended without its
    /// WAL hook: unless nothing at all was committed since it began (`now`), its commit may be
    /// reported later, as another's.
    fn ended_unreported(&mut self, leftover: Option<Landing>, now: Option<&WalHeader>) {
        let Some(leftover) = leftover else {
            return;
        };
        let nothing_committed =
            now.is_some_and(|now| change_counter(now) == change_counter(&leftover.before));
        if !nothing_committed {
            self.suspect = true;
        }
    }
}

impl CommitReporter {
    fn state(&self) -> MutexGuard<'_, ReporterState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn row_changed(&self, row: &UpdateHookResult<'_>) {
        if row.database != "main" || matches!(row.operation, SqliteOperation::Insert) {
            // A new row cannot be stale in the cache: ids are never reused (AUTOINCREMENT).
            return;
        }
        let change = match row.table {
            "sessions" => RowChange::Session(row.rowid),
            "users" => RowChange::User(row.rowid),
            _ => return,
        };
        self.state().changes.push(change);
    }

    /// Under the write lock, just before the commit: the header it starts from.
    fn committing(&self) {
        let before = self.watch.header();
        let mut state = self.state();
        let mut log = self.watch.own().lock();
        state.ended_unreported(log.landing.remove(&self.id), before.as_ref());
        match before {
            Some(before) => {
                let since = Instant::now();
                log.landing.insert(self.id, Landing { before, since });
            }
            // Unreadable: this commit will not be recorded, and its report must not be taken
            // for a later one's.
            None => state.suspect = true,
        }
    }

    /// The commit is in the index, and the WAL holds `frames` frames.
    fn committed(&self, frames: u32) {
        let after = self.watch.header();
        let mut state = self.state();
        let changes = std::mem::take(&mut state.changes);
        let suspect = std::mem::take(&mut state.suspect);
        let mut log = self.watch.own().lock();
        let landing = log.landing.remove(&self.id);
        if let (Some(landing), Some(after), false) = (landing, after, suspect)
            && written_by_commit(&landing.before, frames, &after)
        {
            log.record(Commit {
                before: landing.before,
                after,
                changes,
            });
        }
    }

    fn rolled_back(&self) {
        let now = self.watch.header();
        let mut state = self.state();
        state.changes.clear();
        // Usually this transaction's own failed commit; it may also be an earlier one.
        let leftover = self.watch.own().lock().landing.remove(&self.id);
        state.ended_unreported(leftover, now.as_ref());
    }
}

/// Our WAL hook on one connection, removed when this is dropped.
struct WalHookRegistration {
    db: NonNull<sqlite3>,
    reporter: Arc<CommitReporter>,
}

// SAFETY: the handle is only used to remove the hook, in `drop`, which sqlx runs on the
// connection's own thread before it closes the handle.
unsafe impl Send for WalHookRegistration {}

impl WalHookRegistration {
    fn register(db: NonNull<sqlite3>, reporter: Arc<CommitReporter>) -> Self {
        let context = Arc::as_ptr(&reporter).cast_mut().cast::<c_void>();
        // SAFETY: `db` is open and locked for us (`lock_handle`); `context` stays valid while the
        // hook is set, since this registration holds the reporter and removes the hook first.
        unsafe { sqlite3_wal_hook(db.as_ptr(), Some(on_wal_commit), context) };
        Self { db, reporter }
    }
}

impl Drop for WalHookRegistration {
    fn drop(&mut self) {
        // SAFETY: see `register`; the handle is still open here.
        unsafe { sqlite3_wal_hook(self.db.as_ptr(), None, std::ptr::null_mut()) };
        // The connection is closing: what it had under way will never be reported.
        let reporter = &self.reporter;
        reporter.watch.own().lock().landing.remove(&reporter.id);
    }
}

/// SQLite's WAL hook: a commit of this connection is in the index.
unsafe extern "C" fn on_wal_commit(
    context: *mut c_void,
    db: *mut sqlite3,
    database: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `context` is the reporter the registration keeps alive; `database` is a
    // NUL-terminated name that SQLite owns for the duration of the call.
    let (reporter, name) =
        unsafe { (&*context.cast::<CommitReporter>(), CStr::from_ptr(database)) };
    if name == c"main" {
        // Nothing here may unwind into SQLite.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            reporter.committed(u32::try_from(frames).unwrap_or(0))
        }));
    }
    if frames >= AUTOCHECKPOINT_FRAMES {
        // SAFETY: allowed from within the WAL hook; it is what SQLite's default hook does.
        unsafe { sqlite3_wal_checkpoint(db, database) };
    }
    SQLITE_OK
}

#[cfg(test)]
mod tests;
