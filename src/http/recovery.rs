//! The email flows over the JSON API: password reset, resending verification, and changing
//! the email address (`PATCH /users/me`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc_responses::{BearerErrors, BodyErrors, PasswordGuesses, RateLimited};
use super::docs::ErrorBody;
use super::session::ClientInfo;
use super::users::UserResponse;
use super::{ApiJson, AppState, AuthUser};
use crate::audit::{self, EventKind};
use crate::auth::recovery::{
    confirm_password_reset, request_email_change, request_password_reset, send_verification,
};
use crate::auth::sessions::ClientMeta;
use crate::domain::{FullName, Username};
use crate::error::{Error, Result};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reset_request))
        .routes(routes!(reset_confirm))
        .routes(routes!(resend_verification))
        .routes(routes!(update_me))
}

/// The same answer whether or not an account matched, so the endpoint reveals nothing.
pub const RESET_SENT: &str =
    "If an account matches, a link to reset its password has been sent to its email address.";
pub const VERIFICATION_SENT: &str =
    "If the account has an unverified email address, a new confirmation link has been sent to it.";

#[derive(Debug, Serialize, ToSchema)]
pub struct Detail {
    detail: &'static str,
}

#[derive(Debug, Deserialize, ToSchema)]
struct ResetRequest {
    /// The account's email address, or
    #[serde(default)]
    email: Option<String>,
    /// its username.
    #[serde(default)]
    username: Option<String>,
}

/// Starts a password reset: the link goes out by email, in the background.
#[utoipa::path(
    post,
    path = "/password-reset",
    tag = "recovery",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "Accepted (always the same answer)", body = Detail),
        RateLimited,
        BodyErrors,
    )
)]
async fn reset_request(
    State(state): State<AppState>,
    _: super::rate_limit::PerIp<super::rate_limit::PasswordReset>,
    ClientInfo(client): ClientInfo,
    ApiJson(request): ApiJson<ResetRequest>,
) -> Result<(StatusCode, Json<Detail>)> {
    let identifier = request
        .email
        .or(request.username)
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| Error::validation("email", "Give an email address or a username"))?;
    start_reset(&state, identifier, client, "api");
    Ok((StatusCode::ACCEPTED, Json(Detail { detail: RESET_SENT })))
}

/// Looks the account up and sends the link off the request path, so the answer takes the
/// same time whether or not the account exists. Each account mailed gets an audit event from
/// `client`, with `channel` ("api" or "page") as its detail.
pub fn start_reset(
    state: &AppState,
    identifier: String,
    client: ClientMeta,
    channel: &'static str,
) {
    let background = state.background.clone();
    let state = state.clone();
    background.spawn(async move {
        let now = state.clock.now();
        let out = state.outbound();
        match request_password_reset(state.store.as_ref(), &out, &identifier, now).await {
            Ok(mailed) => {
                for user_id in mailed {
                    let kind = EventKind::PasswordResetRequested;
                    audit::record_detail(&state, kind, Some(user_id), &client, channel).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "password reset request failed"),
        }
    });
}

#[derive(Debug, Deserialize, ToSchema)]
struct ResetConfirm {
    /// The token from the emailed link.
    token: String,
    /// 8 to 128 characters of any kind.
    #[schema(format = Password)]
    new_password: String,
}

/// Sets a new password with the emailed token. Every session of the user ends.
#[utoipa::path(
    post,
    path = "/password-reset/confirm",
    tag = "recovery",
    request_body = ResetConfirm,
    responses(
        (status = 200, description = "Password reset", body = Detail),
        (status = 400, description = "Invalid, used or expired token", body = ErrorBody),
        BodyErrors,
    )
)]
async fn reset_confirm(
    State(state): State<AppState>,
    ClientInfo(client): ClientInfo,
    ApiJson(request): ApiJson<ResetConfirm>,
) -> Result<Json<Detail>> {
    let now = state.clock.now();
    let store = state.store.as_ref();
    let user = confirm_password_reset(
        store,
        &state.hasher,
        &state.outbound(),
        &state.config.abuse.password_policy,
        &request.token,
        request.new_password,
        now,
    )
    .await?;
    let kind = EventKind::PasswordReset;
    audit::record_detail(&state, kind, Some(user.id), &client, "api").await;
    Ok(Json(Detail {
        detail: "Your password has been reset. Log in with the new one.",
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResendRequest {
    pub username: String,
}

/// Sends a new confirmation link to the account's unverified address.
#[utoipa::path(
    post,
    path = "/verify-email/resend",
    tag = "recovery",
    request_body = ResendRequest,
    responses(
        (status = 202, description = "Accepted (always the same answer)", body = Detail),
        RateLimited,
        BodyErrors,
    )
)]
async fn resend_verification(
    // Each request sends an email: limited like password resets, so that nobody can flood
    // an unconfirmed inbox.
    _: super::rate_limit::PerIp<super::rate_limit::PasswordReset>,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ResendRequest>,
) -> (StatusCode, Json<Detail>) {
    start_resend(&state, request.username);
    (
        StatusCode::ACCEPTED,
        Json(Detail {
            detail: VERIFICATION_SENT,
        }),
    )
}

/// Resends a verification link in the background (same answer whatever the account).
pub fn start_resend(state: &AppState, username: String) {
    let background = state.background.clone();
    let state = state.clone();
    background.spawn(async move {
        let now = state.clock.now();
        let store = state.store.as_ref();
        let result = async {
            let user = store.user_by_key(&Username::fold(&username)).await?;
            match user.as_ref().filter(|u| !u.email_verified) {
                Some(user) => match &user.email {
                    Some(email) => {
                        send_verification(store, &state.outbound(), user, email, now).await
                    }
                    None => Ok(()),
                },
                None => Ok(()),
            }
        };
        if let Err(e) = result.await {
            tracing::warn!(error = %e, "resending verification failed");
        }
    });
}

#[derive(Debug, Deserialize, ToSchema)]
struct UserUpdate {
    /// A new address: confirmed by a link sent to it before it replaces the current one.
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    full_name: Option<String>,
    /// Required to change the email address.
    #[serde(default)]
    #[schema(format = Password)]
    current_password: Option<String>,
}

/// Updates the caller. An email change needs the current password and applies only when the
/// new address is confirmed; the old address is told.
#[utoipa::path(
    patch,
    path = "/users/me",
    tag = "users",
    request_body = UserUpdate,
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The user (email unchanged until confirmed)", body = UserResponse),
        (status = 400, description = "The current password is incorrect", body = ErrorBody),
        PasswordGuesses,
        BodyErrors,
        BearerErrors,
    )
)]
async fn update_me(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(update): ApiJson<UserUpdate>,
) -> Result<Json<UserResponse>> {
    let now = state.clock.now();
    let store = state.store.as_ref();
    // Everything is checked before anything is written: a refused request changes nothing.
    let full_name = update
        .full_name
        .as_deref()
        .map(FullName::parse)
        .transpose()
        .map_err(|msg| Error::validation("full_name", msg))?;
    let email_change = match (update.email, update.current_password) {
        (None, _) => None,
        (Some(email), Some(password)) => Some((email, password)),
        (Some(_), None) => {
            return Err(Error::validation(
                "current_password",
                "The current password is required to change the email address",
            ));
        }
    };
    // The email change checks the password and the address, then writes and sends.
    if let Some((email, password)) = email_change {
        request_email_change(
            store,
            state.password_check(),
            &state.outbound(),
            &user,
            password,
            &email,
            now,
        )
        .await?;
    }
    if let Some(full_name) = full_name {
        let full_name = full_name.as_ref().map(FullName::as_str);
        store.set_full_name(user.id, full_name, now).await?;
    }
    let user = store.user_by_id(user.id).await?.ok_or(Error::NotFound)?;
    Ok(Json(user.into()))
}
