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

fn record(own: &OwnCommits, before: WalHeader, after: WalHeader, changes: &[RowChange]) {
    own.lock().record(Commit {
        before,
        after,
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
    let now = header(12, 9, 1, 99);
    record(&own, seen, middle, &[RowChange::Session(5)]);
    record(&own, middle, now, &[RowChange::User(2)]);
    assert_eq!(
        own.since(&seen, &now),
        Since::Own(vec![RowChange::Session(5), RowChange::User(2)])
    );
}

#[test]
fn a_move_past_or_beside_the_chain_is_unknown() {
    let seen = header(10, 4, 1, 99);
    let after = header(11, 6, 1, 99);
    for (case, now) in [
        ("another commit after ours", header(12, 8, 1, 99)),
        ("a restart after ours", header(11, 0, 2, 7)),
        ("another header with our counter", header(11, 7, 1, 99)),
    ] {
        let own = OwnCommits::default();
        record(&own, seen, after, &[]);
        assert_eq!(own.since(&seen, &now), Since::Unknown, "{case}");
    }
    let own = OwnCommits::default();
    assert_eq!(own.since(&seen, &after), Since::Unknown, "nothing recorded");
}

#[test]
fn the_header_a_commit_wrote_is_told_from_any_later_one() {
    let before = header(10, 1000, 1, 99);
    let cases = [
        ("appended", header(11, 1003, 1, 99), 1003, true),
        (
            "written after restarting the WAL",
            header(11, 3, 2, 12345),
            3,
            true,
        ),
        (
            "another commit came after",
            header(12, 1006, 1, 99),
            1003,
            false,
        ),
        ("a restart came after", header(11, 0, 2, 7), 1003, false),
        (
            "other frames than reported",
            header(11, 1004, 1, 99),
            1003,
            false,
        ),
        (
            "other salts that are no restart",
            header(11, 1003, 9, 99),
            1003,
            false,
        ),
        ("no frames", header(11, 0, 1, 99), 0, false),
    ];
    for (case, read, frames, expected) in cases {
        assert_eq!(
            written_by_commit(&before, frames, &read),
            expected,
            "{case}"
        );
    }
}

#[test]
fn a_commit_between_its_hooks_is_landing_until_recorded() {
    let own = OwnCommits::default();
    let seen = header(10, 4, 1, 99);
    let middle = header(11, 6, 1, 99);
    let now = header(12, 8, 1, 99);
    record(&own, seen, middle, &[]);
    landing(&own, 1, middle);
    assert_eq!(
        own.since(&seen, &now),
        Since::Landing,
        "at the end of the chain"
    );
    assert_eq!(
        own.since(&seen, &header(11, 0, 2, 5)),
        Since::Landing,
        "the WAL restarted by the landing commit, before it is written"
    );
    assert_eq!(
        own.since(&seen, &header(13, 10, 1, 99)),
        Since::Unknown,
        "two commits past a landing one: someone else's"
    );

    let own = OwnCommits::default();
    landing(&own, 1, seen);
    assert_eq!(own.since(&seen, &middle), Since::Landing);
    record(&own, seen, middle, &[RowChange::Session(1)]);
    assert_eq!(
        own.since(&seen, &middle),
        Since::Own(vec![RowChange::Session(1)]),
        "once recorded"
    );
}

#[test]
fn commits_before_the_current_header_are_dropped_once_passed() {
    let own = OwnCommits::default();
    let seen = header(10, 4, 1, 99);
    let now = header(11, 6, 1, 99);
    record(&own, seen, now, &[]);
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

/// A commit by the other connection, reported as if it were the reporter's; its frame count.
async fn commit(other: &mut sqlx::SqliteConnection, reporter: &CommitReporter) -> u32 {
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut *other)
        .await
        .unwrap();
    frame_count(&reporter.watch.header().unwrap())
}

fn recorded(reporter: &CommitReporter) -> usize {
    reporter.watch.own().lock().commits.len()
}

#[tokio::test]
async fn a_report_after_an_unreported_commit_is_dropped() {
    let (_dir, reporter, mut other) = reporter_and_other().await;
    reporter.committing();
    // The counter moves before the next commit hook: the first transaction may have committed.
    commit(&mut other, &reporter).await;
    reporter.committing();
    let frames = commit(&mut other, &reporter).await;
    reporter.committed(frames);
    assert_eq!(
        recorded(&reporter),
        0,
        "the report may be the earlier commit's"
    );
    reporter.committing();
    let frames = commit(&mut other, &reporter).await;
    reporter.committed(frames);
    assert_eq!(recorded(&reporter), 1, "one report later, trusted again");
}

#[tokio::test]
async fn a_transaction_that_wrote_nothing_leaves_the_next_report_trusted() {
    let (_dir, reporter, mut other) = reporter_and_other().await;
    reporter.committing();
    // No commit anywhere since: the first transaction wrote nothing and reports nothing.
    reporter.committing();
    let frames = commit(&mut other, &reporter).await;
    reporter.committed(frames);
    assert_eq!(recorded(&reporter), 1);
}

#[tokio::test]
async fn a_report_whose_header_moved_on_is_not_recorded() {
    let (_dir, reporter, mut other) = reporter_and_other().await;
    reporter.committing();
    let frames = commit(&mut other, &reporter).await;
    commit(&mut other, &reporter).await;
    reporter.committed(frames);
    assert_eq!(recorded(&reporter), 0);
}
