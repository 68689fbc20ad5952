//! A password login as the API (`POST /token`) and the login page both take it: the
//! credentials checked, then the address confirmation. A refusal that says something about the
//! credentials is counted in the metrics; a wrong password or a disabled account
//! (`audit::login_failure`) and an address not yet confirmed (`audit::login_unverified`) are
//! also recorded on the account's activity. Each caller then starts its own kind of session and
//! counts the success (`count_success`), so a login whose session failed to start is not one.

use chrono::{DateTime, Utc};

use super::AppState;
use crate::audit;
use crate::auth::login::{LoginError, authenticate};
use crate::auth::recovery::ensure_verified;
use crate::auth::sessions::{Authenticated, ClientMeta};
use crate::error::Result;
use crate::metrics::{LoginChannel, LoginOutcome};

/// The user whose password this is, with the hash it matched, when the account may sign in
/// now.
pub async fn check_password_login(
    state: &AppState,
    channel: LoginChannel,
    username: &str,
    password: String,
    client: &ClientMeta,
    now: DateTime<Utc>,
) -> Result<Authenticated> {
    let store = state.store.as_ref();
    let check = state.password_check();
    let account = match authenticate(store, check, now, username, password).await {
        Ok(account) => account,
        Err(refused) => {
            if let Some(outcome) = refused_outcome(&refused) {
                state.metrics.count_login(channel, outcome);
            }
            audit::login_failure(state, &refused, client, channel).await;
            return Err(refused.into());
        }
    };
    if let Err(unverified) = ensure_verified(&state.config.mail, &account.user) {
        state.metrics.count_login(channel, LoginOutcome::Unverified);
        audit::login_unverified(state, &account.user, client, channel).await;
        return Err(unverified);
    }
    Ok(account)
}

/// Counts a login whose session has started.
pub fn count_success(state: &AppState, channel: LoginChannel) {
    state.metrics.count_login(channel, LoginOutcome::Success);
}

/// What a refused login counts as; `None` for refusals that say nothing about the
/// credentials (a throttled attempt, a database outage).
fn refused_outcome(refused: &LoginError) -> Option<LoginOutcome> {
    match refused {
        LoginError::BadCredentials { .. } => Some(LoginOutcome::BadCredentials),
        LoginError::Inactive { .. } => Some(LoginOutcome::Inactive),
        LoginError::Unchecked(_) => None,
    }
}
