//! When this process last found a database connection cut.
//!
//! A restart of the database server (or a failover, or an operator's `pg_terminate_backend`)
//! cuts every pooled connection at once. The pool checks a connection before use only when it
//! sat idle for a while (`postgres.rs`), so under load the first query to meet a cut one fails.
//! That failure is noted here, and from then on every connection released to the pool before it
//! is checked before its next use: one failed request, not one per pooled connection.
//!
//! One clock for the whole process: a failure seen by one pool makes another's connections
//! checked once more, which costs a round trip each and nothing else.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The instant the times below count from.
static START: OnceLock<Instant> = OnceLock::new();
/// Nanoseconds from `START` to the last cut connection seen; 0 for none.
static LAST_SEEN: AtomicU64 = AtomicU64::new(0);

fn since_start() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

/// Notes that a query just found its connection cut.
pub fn note() {
    // The start must precede the failure, so `since_start()` runs first; `max(1)` keeps a
    // failure in the very first nanosecond distinct from "none".
    let at = u64::try_from(since_start().as_nanos()).unwrap_or(u64::MAX);
    LAST_SEEN.fetch_max(at.max(1), Ordering::Relaxed);
}

/// Whether a connection idle for `idle_for` went back to the pool before the last cut
/// connection was seen, and so may have been cut too.
pub fn may_be_cut(idle_for: Duration) -> bool {
    match LAST_SEEN.load(Ordering::Relaxed) {
        0 => false,
        at => since_start().saturating_sub(Duration::from_nanos(at)) <= idle_for,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_released_before_a_cut_is_seen_are_suspect_and_later_ones_are_not() {
        note();
        std::thread::sleep(Duration::from_millis(20));
        // Released 10 ms ago: after the failure, so not suspect.
        assert!(!may_be_cut(Duration::from_millis(10)));
        // Released an hour ago: before the failure.
        assert!(may_be_cut(Duration::from_secs(3600)));
    }
}
