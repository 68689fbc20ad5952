//! The email flows: password reset, email verification and email change. Tokens are 256-bit,
//! stored as hashes, single-use, short-lived, and a newer one supersedes older ones.
//! No HTTP here; links are built from the public URL.

use chrono::{DateTime, Utc};
use url::Url;

use super::PasswordHasher;
use super::login::{PasswordCheck, confirm_current_password};
use super::session::{hash_token, new_token};
use crate::config::MailConfig;
use crate::domain::{Email, PasswordContext, PasswordPolicy, Username};
use crate::email::{EmailKind, Mailer, compose};
use crate::error::{Error, Result};
use crate::store::{EmailTokenPurpose, NewEmailToken, PasswordChange, PasswordSet, Store, User};

/// What the email flows need besides the store.
pub struct Outbound<'a> {
    pub mailer: &'a Mailer,
    pub public_url: &'a Url,
    pub mail: &'a MailConfig,
}

impl Outbound<'_> {
    fn link(&self, path: &str, token: &str) -> String {
        let mut url = self.public_url.clone();
        url.set_path(path);
        url.query_pairs_mut().clear().append_pair("token", token);
        url.to_string()
    }

    /// Creates a token for `user` and mails its link to `to`.
    async fn send_link(
        &self,
        store: &dyn Store,
        user: &User,
        to: &str,
        purpose: EmailTokenPurpose,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (token, token_hash) = new_token();
        let ttl = link_lifetime(self.mail, purpose);
        let expires_at =
            now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
        let email = (purpose == EmailTokenPurpose::VerifyEmail).then(|| to.to_string());
        store
            .create_email_token(NewEmailToken {
                user_id: user.id,
                purpose,
                token_hash,
                email,
                created_at: now,
                expires_at,
            })
            .await?;
        let kind = match purpose {
            EmailTokenPurpose::PasswordReset => EmailKind::PasswordReset {
                link: &self.link("/reset-password", &token),
                minutes: ttl.as_secs() / 60,
            },
            EmailTokenPurpose::VerifyEmail => EmailKind::VerifyEmail {
                link: &self.link("/verify-email", &token),
                hours: ttl.as_secs() / 3600,
            },
        };
        self.mailer.send(compose(to, &user.username, kind)?);
        Ok(())
    }

    fn notify(&self, to: &str, username: &str, kind: EmailKind<'_>) -> Result<()> {
        self.mailer.send(compose(to, username, kind)?);
        Ok(())
    }
}

/// How long a link mailed for `purpose` works.
pub fn link_lifetime(mail: &MailConfig, purpose: EmailTokenPurpose) -> std::time::Duration {
    match purpose {
        EmailTokenPurpose::PasswordReset => mail.reset_token_ttl,
        EmailTokenPurpose::VerifyEmail => mail.verification_token_ttl,
    }
}

/// Sends a reset link to every account matching `identifier` (an email address or a
/// username) that has an address; the ids of those accounts. Tells the client nothing about
/// whether one exists: callers answer the same either way and run this in the background.
pub async fn request_password_reset(
    store: &dyn Store,
    out: &Outbound<'_>,
    identifier: &str,
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let users = if identifier.contains('@') {
        store.users_by_email(identifier.trim()).await?
    } else {
        store
            .user_by_key(&Username::fold(identifier))
            .await?
            .into_iter()
            .collect()
    };
    let mut mailed = Vec::new();
    for user in users.iter().filter(|u| !u.disabled) {
        if let Some(email) = &user.email {
            out.send_link(store, user, email, EmailTokenPurpose::PasswordReset, now)
                .await?;
            mailed.push(user.id);
        }
    }
    Ok(mailed)
}

/// The account a live (unused, unexpired) reset link belongs to, without using the link.
pub async fn reset_link_owner(
    store: &dyn Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<User>> {
    let purpose = EmailTokenPurpose::PasswordReset;
    let Some(owner) = store
        .email_token_owner(&hash_token(token), purpose, now)
        .await?
    else {
        return Ok(None);
    };
    Ok(store.user_by_id(owner).await?)
}

/// Sets a new password with a reset token; ends every session and tells the user by email.
/// The password must pass `policy` for this account.
#[allow(clippy::too_many_arguments)]
pub async fn confirm_password_reset(
    store: &dyn Store,
    hasher: &PasswordHasher,
    out: &Outbound<'_>,
    policy: &PasswordPolicy,
    token: &str,
    new_password: String,
    now: DateTime<Utc>,
) -> Result<User> {
    let invalid = || {
        Error::BadRequest("This reset link is invalid or has expired. Ask for a new one.".into())
    };
    // Judge the password against the account before using the single-use token, so a
    // refused password does not burn the link.
    let user = reset_link_owner(store, token, now)
        .await?
        .ok_or_else(invalid)?;
    let token_hash = hash_token(token);
    let context = PasswordContext {
        username: &user.username,
        email: user.email.as_deref(),
    };
    let password = policy
        .check(new_password, context)
        .map_err(|msg| Error::validation("new_password", msg))?;
    // Hashed before the link is used: a hash refused for want of a slot (503) leaves the
    // link working for the retry.
    let hash = hasher.hash(&password).await?;
    let change = PasswordChange {
        user_id: user.id,
        new_hash: &hash,
        replaces: None,
        reset_link: Some(&token_hash),
        keep_session: None,
        // A reset always opens an account slowed down or locked by failed logins.
        failures_of: &super::throttle::name_hash(&user.username),
    };
    let PasswordSet::Set {
        sessions_ended: ended,
    } = store.set_password(change, now).await?
    else {
        return Err(invalid());
    };
    tracing::info!(
        user_id = user.id,
        ended,
        "password reset; all sessions ended"
    );
    if let Some(email) = &user.email {
        out.notify(email, &user.username, EmailKind::PasswordChanged)?;
    }
    Ok(user)
}

/// Mails a verification link for `email` to that address.
pub async fn send_verification(
    store: &dyn Store,
    out: &Outbound<'_>,
    user: &User,
    email: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    out.send_link(store, user, email, EmailTokenPurpose::VerifyEmail, now)
        .await
}

/// Whether an address confirmation link still works (without using it).
pub async fn verification_link_is_live(
    store: &dyn Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let (hash, purpose) = (hash_token(token), EmailTokenPurpose::VerifyEmail);
    Ok(store
        .email_token_owner(&hash, purpose, now)
        .await?
        .is_some())
}

/// What a used, superseded, expired or unknown confirmation link gets.
pub const LINK_INVALID: &str = "This confirmation link is invalid or has expired.";

/// Confirms an address with a verification token: the user's email becomes it, verified.
pub async fn confirm_email(store: &dyn Store, token: &str, now: DateTime<Utc>) -> Result<User> {
    let invalid = || Error::BadRequest(LINK_INVALID.into());
    store
        .confirm_email(&hash_token(token), now)
        .await?
        .ok_or_else(invalid)
}

/// Starts a change of address: needs the current password; the new address gets a
/// verification link and the old one a notice. Nothing changes until the link is used.
pub async fn request_email_change(
    store: &dyn Store,
    check: PasswordCheck<'_>,
    out: &Outbound<'_>,
    user: &User,
    current_password: String,
    new_email: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let new_email = Email::parse(new_email).map_err(|msg| Error::validation("email", msg))?;
    confirm_current_password(store, check, user, current_password, now).await?;
    send_verification(store, out, user, new_email.as_str(), now).await?;
    if let Some(old) = user
        .email
        .as_deref()
        .filter(|old| !old.eq_ignore_ascii_case(new_email.as_str()))
    {
        out.notify(
            old,
            &user.username,
            EmailKind::EmailChangeRequested {
                new_email: new_email.as_str(),
            },
        )?;
    }
    Ok(())
}

/// With `REQUIRE_EMAIL_VERIFICATION`, login waits for a verified address.
pub fn ensure_verified(mail: &MailConfig, user: &User) -> Result<()> {
    if mail.require_verification && !user.email_verified {
        return Err(Error::Forbidden(
            "Email address not verified: open the link we sent you, or ask for a new one".into(),
        ));
    }
    Ok(())
}
