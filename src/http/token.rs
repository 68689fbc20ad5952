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
use crate::auth::login::authenticate;
use crate::error::{AuthFailure, Error, Result};
use crate::metrics::LoginOutcome;
use crate::store::User;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue_token))
}

/// FastAPI's `OAuth2PasswordRequestForm`. Other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
struct TokenRequest {
    username: String,
    #[schema(format = Password)]
    password: String,
    /// `password`, or absent.
    #[serde(default)]
    #[schema(pattern = "^(password)?$")]
    grant_type: Option<String>,
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
        (status = 400, description = "Inactive user, unsupported `grant_type`, or a malformed form",
         body = ErrorBody),
        (status = 401, description = "Incorrect username or password", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        BodyErrors,
        Unavailable,
    )
)]
async fn issue_token(
    State(state): State<AppState>,
    AnyForm(request): AnyForm<TokenRequest>,
) -> Result<Response> {
    match request.grant_type.as_deref() {
        None | Some("") | Some("password") => {}
        Some(_) => {
            return Err(Error::BadRequest(
                "Unsupported grant_type: use \"password\"".into(),
            ));
        }
    }
    let outcome = authenticate(
        state.store.as_ref(),
        &state.hasher,
        &request.username,
        request.password,
    )
    .await;
    if let Some(login) = login_outcome(&outcome) {
        state.metrics.count_login(login);
    }
    let user = outcome?;
    let issued = state.tokens.issue(&user.username)?;
    tracing::info!(user_id = user.id, "access token issued");
    let body = TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in.as_secs(),
    };
    Ok(no_store(Json(body)))
}

/// What a login attempt counts as; `None` for failures that say nothing about the credentials
/// (such as a database outage).
fn login_outcome(outcome: &Result<User>) -> Option<LoginOutcome> {
    match outcome {
        Ok(_) => Some(LoginOutcome::Success),
        Err(Error::Unauthorized(AuthFailure::BadCredentials)) => Some(LoginOutcome::BadCredentials),
        Err(Error::InactiveUser) => Some(LoginOutcome::Inactive),
        Err(_) => None,
    }
}

/// Token responses must not be cached (RFC 6749 section 5.1).
pub fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
