//! `POST /token`: the OAuth2 password flow (RFC 6749 section 4.3), as FastAPI's
//! `OAuth2PasswordRequestForm` reads it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::doc_responses::{BodyErrors, Unavailable};
use super::docs::ErrorBody;
use super::form::AnyForm;
use super::password_login::{check_password_login, count_success};
use super::rate_limit::{Login, PerIp};
use super::session::ClientInfo;
use crate::audit::{self, EventKind};
use crate::auth::sessions::{Refresh, invalid_refresh_token, refresh, start_api_session};
use crate::error::{Error, FieldError, Result};
use crate::metrics::LoginChannel;
use crate::store::User;
use chrono::{DateTime, Utc};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue_token))
}

/// FastAPI's `OAuth2PasswordRequestForm`. Other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
struct TokenRequest {
    /// Required with the `password` grant.
    #[serde(default)]
    username: Option<String>,
    /// Required with the `password` grant.
    #[serde(default)]
    #[schema(format = Password)]
    password: Option<String>,
    /// `password` (the default) or `refresh_token`.
    #[serde(default)]
    #[schema(pattern = "^(password|refresh_token)?$")]
    grant_type: Option<String>,
    /// Required with the `refresh_token` grant: the refresh token of the last response.
    #[serde(default)]
    #[schema(format = Password)]
    refresh_token: Option<String>,
    /// Accepted for compatibility; Gatehouse tokens carry no scopes yet.
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
    /// Accepted (Swagger UI may send it) and ignored: there are no registered clients.
    #[serde(default)]
    #[allow(dead_code)]
    client_id: Option<String>,
    /// Accepted and ignored, like `client_id`.
    #[serde(default)]
    #[allow(dead_code)]
    #[schema(format = Password)]
    client_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct TokenResponse {
    access_token: String,
    #[schema(example = "bearer")]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
    /// Exchange it at `/token` with `grant_type=refresh_token` for a new pair; each refresh
    /// token works once.
    refresh_token: String,
}

/// Logs in with the OAuth2 password flow and returns a bearer token.
#[utoipa::path(
    post,
    path = "/token",
    tag = "auth",
    request_body(content(
        (TokenRequest = "application/x-www-form-urlencoded"),
        (TokenRequest = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "A bearer token", body = TokenResponse,
         headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "Inactive user, unsupported `grant_type`, an invalid \
         refresh token, or a malformed form", body = ErrorBody),
        (status = 401, description = "Incorrect username or password", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "Email address not confirmed (only when \
         `REQUIRE_EMAIL_VERIFICATION` is on)", body = ErrorBody),
        (status = 429, description = "Too many requests from this address, or too many failed \
         logins for this account, or too many at once", body = ErrorBody,
         headers(("Retry-After" = String, description = "Seconds to wait (absent when only a \
         password reset helps)"))),
        BodyErrors,
        Unavailable,
    )
)]
async fn issue_token(
    State(state): State<AppState>,
    client: ClientInfo,
    _: PerIp<Login>,
    AnyForm(request): AnyForm<TokenRequest>,
) -> Result<Response> {
    // A refresh checks no password: it stays on the shared workers, out of a login flood's way.
    if request.grant_type.as_deref() == Some("refresh_token") {
        return grant_token(state, client, request).await;
    }
    state
        .on_password_lane(|state| grant_token(state, client, request))
        .await?
}

/// The work of `issue_token`; a password grant's on the password lane (`super::password_lane`).
async fn grant_token(
    state: AppState,
    client: ClientInfo,
    request: TokenRequest,
) -> Result<Response> {
    let now = state.clock.now();
    let (session_id, user, refresh_token) = match request.grant_type.as_deref() {
        None | Some("") | Some("password") => password_grant(&state, request, client, now).await?,
        Some("refresh_token") => refresh_grant(&state, request, client, now).await?,
        Some(_) => {
            return Err(Error::BadRequest(
                "Unsupported grant_type: use \"password\" or \"refresh_token\"".into(),
            ));
        }
    };
    let issued = state.tokens.issue(&user.username, session_id, now)?;
    tracing::info!(user_id = user.id, session_id, "access token issued");
    let body = TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in.as_secs(),
        refresh_token,
    };
    Ok(no_store(Json(body)))
}

/// The OAuth2 password grant: checks the credentials and starts an API session.
async fn password_grant(
    state: &AppState,
    request: TokenRequest,
    ClientInfo(client): ClientInfo,
    now: DateTime<Utc>,
) -> Result<(i64, User, String)> {
    let (username, password) = match (request.username, request.password) {
        (Some(username), Some(password)) => (username, password),
        // Both missing fields at once, as FastAPI reports them.
        (username, password) => {
            let absent = [
                ("username", username.is_none()),
                ("password", password.is_none()),
            ];
            let errors = absent
                .into_iter()
                .filter(|(_, absent)| *absent)
                .map(|(field, _)| FieldError::missing(field));
            return Err(Error::Validation(errors.collect()));
        }
    };
    let channel = LoginChannel::Api;
    let account = check_password_login(state, channel, &username, password, &client, now).await?;
    let event = audit::login_success_event(state, &account.user, &client, channel);
    let sessions = &state.config.sessions;
    let store = state.store.as_ref();
    let (session, refresh_token) =
        start_api_session(store, sessions, now, &account, client, Some(event)).await?;
    count_success(state, channel);
    Ok((session.id, account.user, refresh_token))
}

/// The refresh-token grant: the next token of the session's family. A reused token has
/// revoked its family; the reuse is recorded on the account's activity.
async fn refresh_grant(
    state: &AppState,
    request: TokenRequest,
    ClientInfo(client): ClientInfo,
    now: DateTime<Utc>,
) -> Result<(i64, User, String)> {
    let presented = request
        .refresh_token
        .ok_or_else(|| missing("refresh_token"))?;
    let store = state.store.as_ref();
    match refresh(store, &state.config.sessions, now, &presented).await? {
        Refresh::Rotated {
            session,
            user,
            refresh_token,
        } => Ok((session.id, user, refresh_token)),
        Refresh::Reused {
            session_id,
            user_id,
        } => {
            let detail = format!("session {session_id} revoked");
            let kind = EventKind::RefreshTokenReuse;
            audit::record_detail(state, kind, Some(user_id), &client, detail).await;
            Err(invalid_refresh_token())
        }
    }
}

fn missing(field: &str) -> Error {
    Error::Validation(vec![FieldError::missing(field)])
}

/// Token responses must not be cached (RFC 6749 section 5.1).
pub fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
