//! Live sessions kept in memory, so a signed-in request does not read its session row.
//!
//! Revocation must still take effect on the very next request, on every instance. So an entry
//! is only served while the cache knows of every change to `sessions` and `users`:
//! - writes of this process forget what they change when the write ends, after its commit
//!   (`forget_after`, a guard);
//! - PostgreSQL: triggers `NOTIFY` each change, and `follow_postgres` forgets what they name,
//!   on every instance as soon as the notification arrives. While that listener is not
//!   subscribed or hears nothing (at start, after a lost or silent connection) nothing is
//!   served or stored;
//! - SQLite: every commit, by any connection or process, changes the WAL index header in the
//!   `-shm` file. Each lookup reads that header first (`WalWatch`). When it moved through this
//!   process's own commits only, the cache forgets the rows they changed, as SQLite's hooks
//!   reported them (`own_commits`); when it moved otherwise, the cache empties. So a write by
//!   another process, such as the admin command line, is seen at once, and this process's many
//!   writes that change no session (audit events, new sessions) leave the cache serving.
//!
//! A lookup that misses reads the database, then stores the row only if no change was seen
//! meanwhile (the generation did not move), so a row read just before a revocation committed is
//! never stored after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::{LiveSession, User};

/// What a lookup found.
pub(crate) enum Lookup {
    Hit(Box<(LiveSession, User)>),
    /// Read the database, then hand the row and this ticket to `store`.
    Miss(FillTicket),
}

/// Permission to store one row read from the database, valid while nothing changed.
pub(crate) struct FillTicket(Option<u64>);

struct Cached {
    session: LiveSession,
    user: User,
    /// The cookie-token hash it was found by (browser sessions).
    token_hash: Option<String>,
}

struct Entries {
    /// Moves at every change the cache hears of; a fill must see the value it started with.
    generation: u64,
    /// Whether the cache hears of every change right now (PostgreSQL: listener subscribed).
    trusted: bool,
    /// Set at shutdown: never trusted again.
    closed: bool,
    /// SQLite: the WAL index header the entries were checked against.
    seen_header: Option<WalHeader>,
    by_id: HashMap<i64, Cached>,
    /// Cookie-token hash to session id.
    by_token: HashMap<String, i64>,
}

impl Entries {
    fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    fn clear(&mut self) {
        self.changed();
        self.by_id.clear();
        self.by_token.clear();
    }

    /// Forgets what this process's own commits changed.
    fn forget_rows(&mut self, changes: &[RowChange]) {
        if changes.is_empty() {
            return;
        }
        self.changed();
        for change in changes {
            match *change {
                RowChange::Session(session_id) => self.remove(session_id),
                RowChange::User(user_id) => self.remove_user(user_id),
            }
        }
    }

    fn remove_user(&mut self, user_id: i64) {
        self.by_id.retain(|_, cached| cached.user.id != user_id);
        let Self {
            by_id, by_token, ..
        } = self;
        by_token.retain(|_, id| by_id.contains_key(id));
    }

    fn remove(&mut self, session_id: i64) {
        if let Some(gone) = self.by_id.remove(&session_id)
            && let Some(hash) = gone.token_hash
        {
            self.by_token.remove(&hash);
        }
    }

    fn live(&self, session_id: i64, now: DateTime<Utc>) -> Option<&Cached> {
        self.by_id.get(&session_id).filter(|cached| {
            // An idle deadline pushed forward by another instance is not seen here; the
            // database decides then (a miss), so an early deadline never ends a session.
            cached.session.expires_at > now && cached.session.idle_expires_at > now
        })
    }
}

pub(crate) struct SessionCache {
    entries: Mutex<Entries>,
    capacity: usize,
    watch: Option<Arc<WalWatch>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// How the cache has done since the start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCacheStats {
    /// Signed-in requests answered from memory.
    pub hits: u64,
    /// Signed-in requests that read the database.
    pub misses: u64,
}

/// A change about to be written, forgotten when the write is over (`SessionCache::forget_after`).
pub(crate) enum Change<'a> {
    Session(i64),
    Token(&'a str),
    User(i64),
}

/// Forgets its change when dropped: after the commit on success, and also when the write
/// fails or its request is cancelled half-way, since the database may have committed anyway.
#[must_use = "the change is forgotten when this is dropped"]
pub(crate) struct ForgetOnDrop<'a> {
    cache: &'a SessionCache,
    change: Change<'a>,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        match self.change {
            Change::Session(id) => self.cache.forget_session(id),
            Change::Token(hash) => self.cache.forget_token(hash),
            Change::User(id) => self.cache.forget_user(id),
        }
    }
}

impl SessionCache {
    /// A cache of at most `capacity` sessions (0: never stores). `trusted` says whether it
    /// hears of every change from the start (SQLite with a `WalWatch`) or only once a change
    /// feed says so (`set_trusted`).
    fn new(capacity: usize, trusted: bool, watch: Option<Arc<WalWatch>>) -> Self {
        Self {
            entries: Mutex::new(Entries {
                generation: 0,
                trusted: trusted && capacity > 0,
                closed: false,
                seen_header: None,
                by_id: HashMap::new(),
                by_token: HashMap::new(),
            }),
            capacity,
            watch,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Never stores anything: every lookup reads the database.
    pub(crate) fn disabled() -> Self {
        Self::new(0, false, None)
    }

    /// For PostgreSQL: trusted only while `follow_postgres` is subscribed.
    pub(crate) fn following_notifications(capacity: usize) -> Self {
        Self::new(capacity, false, None)
    }

    /// For SQLite: every lookup checks the WAL index first.
    pub(crate) fn watching(capacity: usize, watch: Arc<WalWatch>) -> Self {
        Self::new(capacity, true, Some(watch))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map is only a copy of the database: after a panic elsewhere, empty it and go on.
        self.entries.lock().unwrap_or_else(|poisoned| {
            self.entries.clear_poison();
            let mut entries = poisoned.into_inner();
            entries.clear();
            entries
        })
    }

    /// The entries, after checking that nothing changed unseen; `None` when they cannot be
    /// trusted for this lookup.
    fn checked(&self) -> Option<std::sync::MutexGuard<'_, Entries>> {
        let header = match &self.watch {
            Some(watch) => Some((watch, watch.header()?)),
            None => None,
        };
        let mut entries = self.lock();
        if !entries.trusted {
            return None;
        }
        if let Some((watch, now)) = header
            && entries.seen_header != Some(now)
        {
            let since = match &entries.seen_header {
                Some(seen) => watch.own().since(seen, &now),
                None => Since::Unknown,
            };
            match since {
                Since::Own(changes) => entries.forget_rows(&changes),
                Since::Landing => return None,
                Since::Unknown => entries.clear(),
            }
            entries.seen_header = Some(now);
        }
        Some(entries)
    }

    /// The live session with this id.
    pub(crate) fn by_id(&self, session_id: i64, now: DateTime<Utc>) -> Lookup {
        let Some(entries) = self.checked() else {
            return self.miss(None);
        };
        match entries.live(session_id, now) {
            Some(cached) => self.hit(cached),
            None => self.miss(Some(entries.generation)),
        }
    }

    fn hit(&self, cached: &Cached) -> Lookup {
        self.hits.fetch_add(1, Ordering::Relaxed);
        Lookup::Hit(Box::new((cached.session.clone(), cached.user.clone())))
    }

    fn miss(&self, generation: Option<u64>) -> Lookup {
        self.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(FillTicket(generation))
    }

    pub(crate) fn stats(&self) -> SessionCacheStats {
        SessionCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The live browser session with this cookie-token hash.
    pub(crate) fn by_token(&self, token_hash: &str, now: DateTime<Utc>) -> Lookup {
        let Some(entries) = self.checked() else {
            return self.miss(None);
        };
        let found = entries
            .by_token
            .get(token_hash)
            .and_then(|id| entries.live(*id, now))
            .filter(|cached| cached.token_hash.as_deref() == Some(token_hash));
        match found {
            Some(cached) => self.hit(cached),
            None => self.miss(Some(entries.generation)),
        }
    }

    /// Stores a row read after `ticket` was issued, unless something changed since.
    pub(crate) fn store(
        &self,
        ticket: FillTicket,
        token_hash: Option<&str>,
        found: &(LiveSession, User),
    ) {
        let FillTicket(Some(generation)) = ticket else {
            return;
        };
        let mut entries = self.lock();
        if !entries.trusted || entries.generation != generation {
            return;
        }
        if entries.by_id.len() >= self.capacity {
            // No eviction order to keep: start again, the busy sessions come back first.
            entries.by_id.clear();
            entries.by_token.clear();
        }
        let (session, user) = found;
        entries.remove(session.id);
        if let Some(hash) = token_hash {
            entries.by_token.insert(hash.to_owned(), session.id);
        }
        entries.by_id.insert(
            session.id,
            Cached {
                session: session.clone(),
                user: user.clone(),
                token_hash: token_hash.map(str::to_owned),
            },
        );
    }

    /// A session of this process was used: its copy moves along instead of being read again.
    pub(crate) fn touched(
        &self,
        session_id: i64,
        last_used_at: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) {
        if let Some(cached) = self.lock().by_id.get_mut(&session_id) {
            cached.session.last_used_at = last_used_at;
            cached.session.idle_expires_at = idle_expires_at;
        }
    }

    /// Forgets `change` once the write that makes it is over (see `ForgetOnDrop`).
    pub(crate) fn forget_after<'a>(&'a self, change: Change<'a>) -> ForgetOnDrop<'a> {
        ForgetOnDrop {
            cache: self,
            change,
        }
    }

    pub(crate) fn forget_session(&self, session_id: i64) {
        let mut entries = self.lock();
        entries.changed();
        entries.remove(session_id);
    }

    pub(crate) fn forget_token(&self, token_hash: &str) {
        let mut entries = self.lock();
        entries.changed();
        if let Some(id) = entries.by_token.remove(token_hash) {
            entries.remove(id);
        }
    }

    /// Forgets the user and every session of theirs (any change to the user row).
    pub(crate) fn forget_user(&self, user_id: i64) {
        let mut entries = self.lock();
        entries.changed();
        entries.remove_user(user_id);
    }

    pub(crate) fn forget_all(&self) {
        self.lock().clear();
    }

    /// Starts or stops serving from memory; either way, what was kept is dropped, since changes
    /// may have gone unheard.
    pub(crate) fn set_trusted(&self, trusted: bool) {
        let mut entries = self.lock();
        entries.clear();
        entries.trusted = trusted && self.capacity > 0 && !entries.closed;
    }

    /// At shutdown: empties the cache and never trusts it again.
    pub(crate) fn close(&self) {
        let mut entries = self.lock();
        entries.closed = true;
        entries.trusted = false;
        entries.clear();
    }

    /// Applies one notification: `s:<session id>`, `u:<user id>`, `*`, or a heartbeat
    /// (`HEARTBEAT`, nothing to forget). Anything else forgets everything.
    pub(crate) fn apply(&self, change: &str) {
        if change == follow::HEARTBEAT {
            return;
        }
        let id = |prefix| change.strip_prefix(prefix)?.parse::<i64>().ok();
        if let Some(session_id) = id("s:") {
            self.forget_session(session_id);
        } else if let Some(user_id) = id("u:") {
            self.forget_user(user_id);
        } else {
            self.forget_all();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

mod wal_watch;
use wal_watch::WalHeader;
pub(crate) use wal_watch::WalWatch;

mod own_commits;
use own_commits::{RowChange, Since};

mod follow;
pub(crate) use follow::follow_postgres;

#[cfg(test)]
mod tests;
