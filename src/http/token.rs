//! `POST /token`: the OAuth2 password flow (RFC 6749 section 4.3), as FastAPI's
//! `OAuth2PasswordRequestForm` reads it.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::form::AnyForm;
use crate::auth::login::authenticate;
use crate::error::{Error, Result};

pub fn router() -> Router<AppState> {
    Router::new().route("/token", post(issue_token))
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    username: String,
    password: String,
    #[serde(default)]
    grant_type: Option<String>,
    /// Accepted for compatibility; Gatehouse tokens carry no scopes yet.
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

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
    let user = authenticate(
        state.store.as_ref(),
        &state.hasher,
        &request.username,
        request.password,
    )
    .await?;
    let issued = state.tokens.issue(&user.username)?;
    tracing::info!(user_id = user.id, "access token issued");
    let body = TokenResponse {
        access_token: issued.token,
        token_type: "bearer",
        expires_in: issued.expires_in.as_secs(),
    };
    Ok(no_store(Json(body)))
}

/// Token responses must not be cached (RFC 6749 section 5.1).
pub fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
