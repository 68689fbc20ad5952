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

/// Changes a signed-in user's password after checking the current one, and ends every other
/// session of theirs (a thief holding one is out at once). `keep` is the caller's session.
pub async fn change_password(
    store: &dyn Store,
    hasher: &PasswordHasher,
    user: &User,
    current: String,
    new: String,
    keep: Option<i64>,
    now: chrono::DateTime<Utc>,
) -> Result<u64> {
    let new = Password::new(new).map_err(|msg| Error::validation("new_password", msg))?;
    let credentials = store
        .credentials_by_key(&Username::fold(&user.username))
        .await?
        .ok_or(Error::Unauthorized(AuthFailure::Invalid))?;
    let current = Password::attempt(current)
        .ok_or_else(|| Error::BadRequest("Current password is incorrect".into()))?;
    if hasher
        .verify(&current, Some(&credentials.hashed_password))
        .await?
        == Verification::Mismatch
    {
        return Err(Error::BadRequest("Current password is incorrect".into()));
    }
    let hash = hasher.hash(&new).await?;
    store.set_password_hash(user.id, &hash, now).await?;
    let ended = store.delete_other_sessions(user.id, keep).await?;
    tracing::info!(
        user_id = user.id,
        ended,
        "password changed; other sessions ended"
    );
    Ok(ended)
}
