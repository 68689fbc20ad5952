//! The session cache keeps serving a signed-in user from memory while other users sign up and
//! log in: their writes change no session it holds (revocations: `instances.rs`).

use std::time::Duration;

use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app};

both_backends!(other_users_signing_up_and_logging_in_leave_a_session_served_from_memory);

/// (hits, misses) of the app's session cache after one `GET /users/me/` with `token`.
async fn get_me_counted(app: &TestApp, token: &str) -> (u64, u64) {
    let before = app.state.store.session_cache_stats();
    assert_eq!(app.get_me(token).await.status(), StatusCode::OK);
    let after = app.state.store.session_cache_stats();
    (after.hits - before.hits, after.misses - before.misses)
}

async fn other_users_signing_up_and_logging_in_leave_a_session_served_from_memory(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    // Stored on the first use; a PostgreSQL instance trusts its cache a moment after it starts.
    let mut warm = false;
    for _ in 0..40 {
        if get_me_counted(&app, &token).await == (1, 0) {
            warm = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(warm, "alice's session is never served from memory");

    for name in ["bob", "carol"] {
        app.signup_and_login(name).await;
        let refused = app.login(name, "not the password").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        get_me_counted(&app, &token).await,
        (1, 0),
        "answered from memory after others' signups, logins and failed logins"
    );
}
