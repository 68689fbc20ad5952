//! Checking a username and password, shared by the API (`POST /token`) and the login page.

use chrono::Utc;

use super::{PasswordHasher, Verification};
use crate::domain::{Password, Username};
use crate::error::{AuthFailure, Error, Result};
use crate::store::{Store, User};

/// Returns the user when the password is right and the account active.
///
/// Unknown users are checked against a dummy hash, so the answer takes as long as for a
/// known user. Legacy (bcrypt) or outdated hashes are replaced after a successful check.
pub async fn authenticate(
    store: &dyn Store,
    hasher: &PasswordHasher,
    username: &str,
    password: String,
) -> Result<User> {
    let credentials = store.credentials_by_key(&Username::fold(username)).await?;
    let Some(attempt) = Password::attempt(password) else {
        // Absurdly long: refused, but only after the same work as any other attempt.
        hasher
            .verify(&Password::attempt(String::new()).expect("fits"), None)
            .await?;
        return Err(Error::Unauthorized(AuthFailure::BadCredentials));
    };
    let stored = credentials.as_ref().map(|c| c.hashed_password.as_str());
    let verification = hasher.verify(&attempt, stored).await?;
    let Some(credentials) = credentials else {
        return Err(Error::Unauthorized(AuthFailure::BadCredentials));
    };
    match verification {
        Verification::Mismatch => Err(Error::Unauthorized(AuthFailure::BadCredentials)),
        _ if credentials.user.disabled => Err(Error::InactiveUser),
        Verification::Match => Ok(credentials.user),
        Verification::MatchNeedsRehash => {
            let upgraded = hasher.hash(&attempt).await?;
            store
                .set_password_hash(credentials.user.id, &upgraded, Utc::now())
                .await?;
            tracing::info!(
                user_id = credentials.user.id,
                "password hash upgraded to current Argon2id parameters"
            );
            Ok(credentials.user)
        }
    }
}
