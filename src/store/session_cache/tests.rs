use std::str::FromStr;

use chrono::{Duration, TimeZone};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::*;

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn row(session_id: i64, user_id: i64) -> (LiveSession, User) {
    let session = LiveSession {
        id: session_id,
        user_id,
        kind: "api".into(),
        persistent: true,
        last_used_at: t(0),
        expires_at: t(60),
        idle_expires_at: t(30),
    };
    let user = User {
        id: user_id,
        username: format!("user{user_id}"),
        email: None,
        email_verified: false,
        full_name: None,
        disabled: false,
        is_superuser: false,
        created_at: t(0),
    };
    (session, user)
}

/// A cache that hears of every change (as a subscribed PostgreSQL instance does).
fn trusted(capacity: usize) -> SessionCache {
    SessionCache::new(capacity, true, None)
}

fn ticket(cache: &SessionCache, session_id: i64) -> FillTicket {
    match cache.by_id(session_id, t(1)) {
        Lookup::Miss(ticket) => ticket,
        Lookup::Hit(_) => panic!("session {session_id} is already cached"),
    }
}

fn cached(
    cache: &SessionCache,
    session_id: i64,
    now: DateTime<Utc>,
) -> Option<(LiveSession, User)> {
    match cache.by_id(session_id, now) {
        Lookup::Hit(found) => Some(*found),
        Lookup::Miss(_) => None,
    }
}

fn fill(cache: &SessionCache, session_id: i64, user_id: i64) {
    let ticket = ticket(cache, session_id);
    cache.store(ticket, None, &row(session_id, user_id));
}

#[test]
fn a_stored_row_is_served_until_its_session_is_forgotten() {
    let cache = trusted(10);
    fill(&cache, 1, 7);
    assert_eq!(cached(&cache, 1, t(1)), Some(row(1, 7)));
    cache.forget_session(1);
    assert_eq!(cached(&cache, 1, t(1)), None);
}

#[test]
fn a_row_read_before_a_change_is_not_stored_after_it() {
    let cache = trusted(10);
    let ticket = ticket(&cache, 1);
    // The session is revoked while its (now stale) row is on its way from the database.
    cache.forget_session(1);
    cache.store(ticket, None, &row(1, 7));
    assert_eq!(cached(&cache, 1, t(1)), None);
}

#[test]
fn expired_copies_are_not_served() {
    let cache = trusted(10);
    fill(&cache, 1, 7);
    assert!(cached(&cache, 1, t(29)).is_some());
    assert_eq!(cached(&cache, 1, t(30)), None, "idle deadline");
    cache.touched(1, t(29), t(90));
    assert!(
        cached(&cache, 1, t(59)).is_some(),
        "use moved the idle deadline"
    );
    assert_eq!(cached(&cache, 1, t(60)), None, "absolute deadline");
}

#[test]
fn use_moves_the_copy_along() {
    let cache = trusted(10);
    fill(&cache, 1, 7);
    cache.touched(1, t(5), t(35));
    let (session, _) = cached(&cache, 1, t(6)).unwrap();
    assert_eq!(
        (session.last_used_at, session.idle_expires_at),
        (t(5), t(35))
    );
}

#[test]
fn forgetting_a_user_forgets_all_their_sessions_and_only_theirs() {
    let cache = trusted(10);
    fill(&cache, 1, 7);
    fill(&cache, 2, 7);
    fill(&cache, 3, 8);
    let ticket = match cache.by_token("cookie", t(1)) {
        Lookup::Miss(ticket) => ticket,
        Lookup::Hit(_) => unreachable!(),
    };
    cache.store(ticket, Some("cookie"), &row(4, 7));
    cache.forget_user(7);
    for gone in [1, 2, 4] {
        assert_eq!(cached(&cache, gone, t(1)), None);
    }
    assert!(matches!(cache.by_token("cookie", t(1)), Lookup::Miss(_)));
    assert!(cached(&cache, 3, t(1)).is_some());
}

#[test]
fn a_cookie_is_served_only_for_the_session_it_was_found_with() {
    let cache = trusted(10);
    let Lookup::Miss(ticket) = cache.by_token("old-cookie", t(1)) else {
        unreachable!()
    };
    cache.store(ticket, Some("old-cookie"), &row(5, 7));
    assert!(matches!(cache.by_token("old-cookie", t(1)), Lookup::Hit(_)));
    cache.forget_token("old-cookie");
    assert!(matches!(
        cache.by_token("old-cookie", t(1)),
        Lookup::Miss(_)
    ));
    // Should a token ever point at a session stored under another token (or none), the
    // token does not find it: an entry answers only the token it was found with.
    fill(&cache, 5, 8);
    cache.lock().by_token.insert("old-cookie".into(), 5);
    assert!(matches!(
        cache.by_token("old-cookie", t(1)),
        Lookup::Miss(_)
    ));
}

#[test]
fn an_untrusted_cache_serves_and_stores_nothing() {
    let cache = SessionCache::following_notifications(10);
    let ticket = ticket(&cache, 1);
    cache.store(ticket, None, &row(1, 7));
    assert_eq!(cache.len(), 0);

    cache.set_trusted(true);
    fill(&cache, 1, 7);
    assert!(cached(&cache, 1, t(1)).is_some());
    // The change feed is lost: what was kept may be stale.
    cache.set_trusted(false);
    assert_eq!(cached(&cache, 1, t(1)), None);
    cache.set_trusted(true);
    assert_eq!(cached(&cache, 1, t(1)), None);
}

#[test]
fn a_closed_cache_is_never_trusted_again() {
    let cache = trusted(10);
    fill(&cache, 1, 7);
    cache.close();
    cache.set_trusted(true);
    assert_eq!(cached(&cache, 1, t(1)), None);
    fill(&cache, 1, 7);
    assert_eq!(cache.len(), 0);
}

#[test]
fn a_write_forgets_its_change_even_when_it_fails() {
    let cache = trusted(10);
    fill(&cache, 1, 7);
    let failed_write = || -> Result<(), ()> {
        let _forget = cache.forget_after(Change::User(7));
        Err(())
    };
    assert!(failed_write().is_err());
    assert_eq!(cached(&cache, 1, t(1)), None);
}

#[test]
fn hits_and_misses_are_counted() {
    let cache = trusted(10);
    fill(&cache, 1, 7);
    cached(&cache, 1, t(1));
    assert_eq!(cache.stats(), SessionCacheStats { hits: 1, misses: 1 });
}

#[test]
fn a_disabled_cache_stays_empty() {
    let cache = SessionCache::disabled();
    cache.set_trusted(true);
    let ticket = ticket(&cache, 1);
    cache.store(ticket, None, &row(1, 7));
    assert_eq!(cache.len(), 0);
}

#[test]
fn notifications_forget_what_they_name() {
    let cache = trusted(10);
    for (session, user) in [(1, 7), (2, 8), (3, 9)] {
        fill(&cache, session, user);
    }
    cache.apply("s:1");
    assert_eq!(cached(&cache, 1, t(1)), None);
    cache.apply("u:8");
    assert_eq!(cached(&cache, 2, t(1)), None);
    assert!(cached(&cache, 3, t(1)).is_some());
    cache.apply("heartbeat");
    assert!(
        cached(&cache, 3, t(1)).is_some(),
        "a heartbeat forgets nothing"
    );
    cache.apply("something new");
    assert_eq!(cache.len(), 0);
}

#[test]
fn a_full_cache_starts_again() {
    let cache = trusted(2);
    fill(&cache, 1, 7);
    fill(&cache, 2, 7);
    fill(&cache, 3, 7);
    assert_eq!(cache.len(), 1);
    assert!(cached(&cache, 3, t(1)).is_some());
}

/// A new WAL-mode database file in `dir`.
pub(in crate::store::session_cache) fn wal_database(
    dir: &tempfile::TempDir,
) -> SqliteConnectOptions {
    let url = format!("sqlite://{}", dir.path().join("cache.db").display());
    SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
}

#[tokio::test]
async fn the_wal_header_moves_at_every_commit_of_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let options = wal_database(&dir);
    let writer = SqlitePoolOptions::new()
        .connect_with(options.clone())
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&writer)
        .await
        .unwrap();
    let watch = WalWatch::open(&options).await.unwrap();
    let cache = SessionCache::watching(10, Arc::new(watch));
    fill(&cache, 1, 7);
    assert!(cached(&cache, 1, t(1)).is_some());

    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&writer)
        .await
        .unwrap();
    assert_eq!(cached(&cache, 1, t(1)), None, "a commit empties the cache");
    fill(&cache, 1, 7);
    assert!(
        cached(&cache, 1, t(1)).is_some(),
        "no commit since: served from memory"
    );
}

mod own_commits;
