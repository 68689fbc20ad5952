//! The chain of commits, on headers made by hand (the real file: `session_cache/tests`).

use super::*;

/// A header with the fields the chain reads; the rest stands for checksums and sizes.
fn header(counter: u32, frames: u32, salt1: u32, salt2: u32) -> WalHeader {
    let mut header = [0u8; 48];
    header[8..12].copy_from_slice(&counter.to_ne_bytes());
    header[12] = 1;
    header[16..20].copy_from_slice(&frames.to_ne_bytes());
    header[24..28].copy_from_slice(&(counter ^ frames).to_ne_bytes());
    header[32..36].copy_from_slice(&salt1.to_be_bytes());
    header[36..40].copy_from_slice(&salt2.to_be_bytes());
    header
}

fn record(own: &OwnCommits, before: WalHeader, frames: u32, changes: &[RowChange]) {
    own.lock().record(Commit {
        before,
        frames,
        changes: changes.to_vec(),
    });
}

fn landing(own: &OwnCommits, connection: u64, before: WalHeader) {
    let since = Instant::now();
    own.lock()
        .landing
        .insert(connection, Landing { before, since });
}

#[test]
fn a_chain_of_own_commits_gathers_what_they_changed() {
    let own = OwnCommits::default();
    let seen = header(10, 4, 1, 99);
    let middle = header(11, 6, 1, 99);
    record(&own, seen, 6, &[RowChange::Session(5)]);
    record(&own, middle, 9, &[RowChange::User(2)]);
    assert_eq!(
        own.since(&seen, &header(12, 9, 1, 99)),
        Since::Own(vec![RowChange::Session(5), RowChange::User(2)])
    );
}

#[test]
fn an_own_commit_that_restarted_the_wal_is_followed() {
    let own = OwnCommits::default();
    let seen = header(10, 1000, 1, 99);
    record(&own, seen, 3, &[]);
    assert_eq!(
        own.since(&seen, &header(11, 3, 2, 12345)),
        Since::Own(vec![])
    );
}

#[test]
fn anything_after_or_instead_of_own_commits_is_unknown() {
    let seen = header(10, 4, 1, 99);
    for (case, now) in [
        ("another writer's commit after ours", header(12, 8, 1, 99)),
        (
            "another writer restarted the WAL after ours",
            header(11, 0, 2, 7),
        ),
        (
            "a commit of ours, but not from this state",
            header(11, 5, 1, 99),
        ),
        ("new salts that are not a restart", header(11, 6, 9, 99)),
    ] {
        let own = OwnCommits::default();
        record(&own, seen, 6, &[]);
        assert_eq!(own.since(&seen, &now), Since::Unknown, "{case}");
    }
    let own = OwnCommits::default();
    assert_eq!(
        own.since(&seen, &header(11, 6, 1, 99)),
        Since::Unknown,
        "nothing recorded"
    );
}

#[test]
fn a_commit_between_its_hooks_is_landing_until_recorded() {
    let own = OwnCommits::default();
    let seen = header(10, 4, 1, 99);
    let now = header(11, 6, 1, 99);
    landing(&own, 1, seen);
    assert_eq!(own.since(&seen, &now), Since::Landing);
    assert_eq!(
        own.since(&seen, &header(12, 8, 1, 99)),
        Since::Unknown,
        "two commits past a landing one: someone else's"
    );
    record(&own, seen, 6, &[RowChange::Session(1)]);
    assert_eq!(
        own.since(&seen, &now),
        Since::Own(vec![RowChange::Session(1)])
    );
}

#[test]
fn commits_before_the_current_header_are_dropped_once_passed() {
    let own = OwnCommits::default();
    let seen = header(10, 4, 1, 99);
    let now = header(11, 6, 1, 99);
    record(&own, seen, 6, &[]);
    assert_eq!(own.since(&seen, &now), Since::Own(vec![]));
    assert!(own.lock().commits.is_empty());
}

/// A reporter for a connection of the pool, and another connection that commits.
async fn reporter_and_other() -> (tempfile::TempDir, CommitReporter, sqlx::SqliteConnection) {
    use sqlx::Connection;

    let dir = tempfile::tempdir().unwrap();
    let options = crate::store::session_cache::tests::wal_database(&dir);
    let watch = Arc::new(WalWatch::open(&options).await.unwrap());
    let mut other = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut other)
        .await
        .unwrap();
    let reporter = CommitReporter {
        watch,
        id: 1,
        state: Mutex::default(),
    };
    (dir, reporter, other)
}

#[tokio::test]
async fn a_report_after_an_unreported_commit_is_dropped() {
    let (_dir, reporter, mut other) = reporter_and_other().await;
    reporter.committing();
    // The counter moves before the next commit hook: the first transaction may have committed.
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut other)
        .await
        .unwrap();
    reporter.committing();
    reporter.committed(9);
    assert!(
        reporter.watch.own().lock().commits.is_empty(),
        "the frame count may be the earlier commit's"
    );
    reporter.committing();
    reporter.committed(9);
    assert_eq!(
        reporter.watch.own().lock().commits.len(),
        1,
        "one report later, trusted again"
    );
}

#[tokio::test]
async fn a_transaction_that_wrote_nothing_leaves_the_next_report_trusted() {
    let (_dir, reporter, _other) = reporter_and_other().await;
    reporter.committing();
    // No commit anywhere since: the first transaction wrote nothing and reports nothing.
    reporter.committing();
    reporter.committed(9);
    assert_eq!(reporter.watch.own().lock().commits.len(), 1);
}
