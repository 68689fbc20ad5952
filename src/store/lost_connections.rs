//! When this process last found a database connection cut.
//!
//! A restart of the database server (or a failover, or an operator's `pg_terminate_backend`)
//! cuts every pooled connection at once. The pool checks a connection before use only when it
//! sat idle for a while (`postgres.rs`), so under load a query can meet a cut connection and
//! fail. The first sign of the cut is noted here: a failed query, a failed heartbeat, or the
//! session cache's change feed (which waits on its socket and so usually notices first). From
//! then on, the pool checks each connection that went back to it before that moment, before
//! its next use. Only requests that took a cut connection before the first sign fail, not one
//! request per pooled connection.
//!
//! One clock for the whole process: a sign seen by one pool makes another's connections
//! checked once more, which costs a round trip each and nothing else.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The instant the times below count from.
static START: OnceLock<Instant> = OnceLock::new();
/// Nanoseconds from `START` to the last sign of a cut connection; 0 for none.
static LAST_SEEN: AtomicU64 = AtomicU64::new(0);

fn since_start() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

/// Held for writing by the test that moves this process's clock, and for reading by tests that
/// need it still: the store's tests run in one process, side by side.
#[cfg(test)]
pub(super) static CLOCK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Notes that a connection was just found cut.
pub fn note() {
    let at = u64::try_from(since_start().as_nanos()).unwrap_or(u64::MAX);
    // 0 stands for "never", so a note in the very first nanosecond counts as 1.
    LAST_SEEN.fetch_max(at.max(1), Ordering::Relaxed);
}

/// Notes the cut if `err` says the connection is gone: the socket failed, or PostgreSQL said
/// so before it closed the connection (08: connection exceptions; 57P: the server or this
/// backend shutting down, as after `pg_terminate_backend`). Other errors leave the connection
/// usable and note nothing.
pub fn note_if_cut(err: &sqlx::Error) {
    let cut = match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    };
    if cut {
        note();
    }
}

/// Whether a connection that has been back in the pool for `idle_for` went back before the
/// last sign of a cut, and so may have been cut too.
pub fn may_be_cut(idle_for: Duration) -> bool {
    match LAST_SEEN.load(Ordering::Relaxed) {
        0 => false,
        at => since_start().saturating_sub(Duration::from_nanos(at)) <= idle_for,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, as the clock is the process's: tests running in parallel would move it.
    #[test]
    fn connections_back_in_the_pool_before_a_cut_connection_errs_are_suspect() {
        let _clock = CLOCK.blocking_write();
        // Errors that leave the connection usable note nothing.
        let before = LAST_SEEN.load(Ordering::Relaxed);
        note_if_cut(&sqlx::Error::RowNotFound);
        note_if_cut(&sqlx::Error::PoolTimedOut);
        assert_eq!(LAST_SEEN.load(Ordering::Relaxed), before);

        note_if_cut(&sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        std::thread::sleep(Duration::from_millis(20));
        // Back in the pool 10 ms ago: after the cut was noted, so checked since.
        assert!(!may_be_cut(Duration::from_millis(10)));
        // Back an hour ago: before it.
        assert!(may_be_cut(Duration::from_secs(3600)));
    }
}
