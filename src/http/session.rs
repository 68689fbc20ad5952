//! Browser sessions over cookies: naming, setting and clearing the cookie, and reading the
//! signed-in user from it.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use super::AppState;
use crate::auth::session::hash_token;
use crate::auth::sessions::{Authenticated, ClientMeta, keep_alive, start_browser_session};
use crate::config::Config;
use crate::error::Result;
use crate::store::{LiveSession, NewEvent, User};

/// `name` (which starts `__Host-`) over https, where the prefix binds a cookie to this exact
/// host; without the prefix over http, where browsers refuse it.
pub fn host_cookie_name(config: &Config, name: &'static str) -> &'static str {
    if config.is_https() {
        name
    } else {
        name.strip_prefix("__Host-").unwrap_or(name)
    }
}

pub fn session_cookie_name(config: &Config) -> &'static str {
    host_cookie_name(config, "__Host-gatehouse_session")
}

pub fn csrf_cookie_name(config: &Config) -> &'static str {
    host_cookie_name(config, "__Host-gatehouse_csrf")
}

/// A cookie with the attributes every Gatehouse cookie has.
pub fn secure_cookie(
    config: &Config,
    name: &'static str,
    value: String,
    max_age: Option<Duration>,
) -> Cookie<'static> {
    let mut cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(config.is_https());
    if let Some(max_age) = max_age {
        let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        cookie = cookie.max_age(time::Duration::seconds(seconds));
    }
    cookie.build()
}

/// What removes the cookie `name` from a browser: the same path, and `Secure` over https,
/// without which a browser ignores any `__Host-` cookie, its removal included.
pub fn removal_cookie(config: &Config, name: &'static str) -> Cookie<'static> {
    Cookie::build(name)
        .path("/")
        .secure(config.is_https())
        .build()
}

/// The signed-in user of a browser request, with their session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session: LiveSession,
}

/// The session cookie's user, if the cookie names a live session of an active user.
pub struct MaybeSignedIn(pub Option<SignedIn>);

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = crate::error::Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(session_cookie_name(&state.config)) else {
            return Ok(Self(None));
        };
        let now = state.clock.now();
        let found = state
            .store
            .session_by_token_hash(&hash_token(cookie.value()), now)
            .await?;
        let Some((session, user)) = found.filter(|(_, user)| !user.disabled) else {
            return Ok(Self(None));
        };
        keep_alive(state.store.as_ref(), &state.config.sessions, now, &session).await?;
        Ok(Self(Some(SignedIn { user, session })))
    }
}

/// Who is asking, for the session list and the audit trail: address (behind a trusted
/// proxy, the client's as `X-Forwarded-For` gives it) and browser.
pub struct ClientInfo(pub ClientMeta);

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> std::result::Result<Self, Self::Rejection> {
        let ip = super::rate_limit::client_ip(parts, &state.config.abuse.trusted_proxies)
            .map(|ip| ip.to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect());
        Ok(Self(ClientMeta { ip, user_agent }))
    }
}

/// Starts a new session for `user` (a new id at every sign-in, so a planted cookie is
/// worthless) and returns the jar with its cookie. Any previous session of this browser ends.
/// `event` (a login) is recorded with the new session.
pub async fn sign_in(
    state: &AppState,
    jar: CookieJar,
    account: &Authenticated,
    remember: bool,
    ClientInfo(client): ClientInfo,
    event: Option<NewEvent>,
) -> Result<CookieJar> {
    let jar = end_session(state, jar).await?;
    let config = &state.config;
    let now = state.clock.now();
    let (token, _) = start_browser_session(
        state.store.as_ref(),
        &config.sessions,
        now,
        account,
        remember,
        client,
        event,
    )
    .await?;
    // Without "Remember me" the cookie has no Max-Age: it ends with the browser.
    let max_age = remember.then_some(config.sessions.remembered.absolute);
    Ok(jar.add(secure_cookie(
        config,
        session_cookie_name(config),
        token,
        max_age,
    )))
}

/// Deletes this browser's session server-side and clears its cookie.
pub async fn end_session(state: &AppState, jar: CookieJar) -> Result<CookieJar> {
    let name = session_cookie_name(&state.config);
    let Some(cookie) = jar.get(name) else {
        return Ok(jar);
    };
    state
        .store
        .delete_session_by_token_hash(&hash_token(cookie.value()))
        .await?;
    Ok(jar.remove(removal_cookie(&state.config, name)))
}
