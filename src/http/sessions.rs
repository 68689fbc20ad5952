//! The caller's sessions over the JSON API: log out, list, end one, end all others, and
//! change the password (which ends all others).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc_responses::{BearerErrors, BodyErrors, PasswordGuesses};
use super::docs::ErrorBody;
use super::extract::{ApiPath, path_id};
use super::session::ClientInfo;
use super::{ApiJson, AppState, BearerSession};
use crate::audit::{self, EventKind};
use crate::auth::login::change_password;
use crate::error::{Error, Result};
use crate::store::Session;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(list_sessions, end_other_sessions))
        .routes(routes!(end_session))
        .routes(routes!(set_password))
}

/// A session as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    id: i64,
    /// `browser` (a signed-in page) or `api` (a token login).
    kind: String,
    created_at: DateTime<Utc>,
    last_used_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ip: Option<String>,
    user_agent: Option<String>,
    /// Whether this is the session making the request.
    current: bool,
}

impl SessionOut {
    pub fn new(session: Session, current: Option<i64>) -> Self {
        Self {
            current: Some(session.id) == current,
            id: session.id,
            kind: session.kind,
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.expires_at.min(session.idle_expires_at),
            ip: session.ip,
            user_agent: session.user_agent,
        }
    }
}

/// Ends the caller's session: its access and refresh tokens stop working at once.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "sessions",
    security(("OAuth2PasswordBearer" = [])),
    responses((status = 204, description = "Logged out"), BearerErrors)
)]
async fn logout(
    State(state): State<AppState>,
    caller: BearerSession,
    ClientInfo(client): ClientInfo,
) -> Result<StatusCode> {
    match caller.session_id {
        Some(id) => {
            state.store.delete_session(caller.user.id, id).await?;
            audit::record_detail(
                &state,
                EventKind::Logout,
                Some(caller.user.id),
                &client,
                "api",
            )
            .await;
            tracing::info!(user_id = caller.user.id, session_id = id, "logged out");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(Error::BadRequest(
            "This token belongs to no session; it expires on its own".into(),
        )),
    }
}

/// The caller's live sessions, newest first.
#[utoipa::path(
    get,
    path = "/users/me/sessions",
    tag = "sessions",
    security(("OAuth2PasswordBearer" = [])),
    responses((status = 200, description = "Live sessions", body = Vec<SessionOut>), BearerErrors)
)]
async fn list_sessions(
    State(state): State<AppState>,
    caller: BearerSession,
) -> Result<Json<Vec<SessionOut>>> {
    let sessions = state
        .store
        .list_sessions(caller.user.id, state.clock.now())
        .await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionOut::new(s, caller.session_id))
            .collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
struct Ended {
    /// How many sessions were ended.
    ended: u64,
}

/// Ends every session of the caller except the current one.
#[utoipa::path(
    delete,
    path = "/users/me/sessions",
    tag = "sessions",
    security(("OAuth2PasswordBearer" = [])),
    responses((status = 200, description = "Other sessions ended", body = Ended), BearerErrors)
)]
async fn end_other_sessions(
    State(state): State<AppState>,
    caller: BearerSession,
    ClientInfo(client): ClientInfo,
) -> Result<Json<Ended>> {
    let ended = state
        .store
        .delete_other_sessions(caller.user.id, caller.session_id)
        .await?;
    let detail = format!("{ended} other sessions");
    audit::record_detail(
        &state,
        EventKind::SessionEnded,
        Some(caller.user.id),
        &client,
        detail,
    )
    .await;
    Ok(Json(Ended { ended }))
}

/// Ends one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/users/me/sessions/{id}",
    tag = "sessions",
    params(("id" = i64, Path, description = "Session id")),
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 204, description = "Session ended"),
        (status = 404, description = "No such session of yours", body = ErrorBody),
        (status = 422, description = "The id is not an integer", body = super::docs::ValidationErrorBody),
        BearerErrors,
    )
)]
async fn end_session(
    State(state): State<AppState>,
    caller: BearerSession,
    ClientInfo(client): ClientInfo,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let id = path_id(&id)?;
    if state.store.delete_session(caller.user.id, id).await? {
        let detail = format!("session {id}");
        audit::record_detail(
            &state,
            EventKind::SessionEnded,
            Some(caller.user.id),
            &client,
            detail,
        )
        .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
struct PasswordChange {
    #[schema(format = Password)]
    current_password: String,
    /// 8 (or the configured minimum) to 128 characters of any kind; not a common password,
    /// and containing neither the username nor the email address.
    #[schema(min_length = 8, max_length = 128, format = Password)]
    new_password: String,
}

/// Changes the caller's password and ends every other session.
#[utoipa::path(
    post,
    path = "/users/me/password",
    tag = "sessions",
    request_body = PasswordChange,
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "Password changed; other sessions ended", body = Ended),
        (status = 400, description = "The current password is incorrect", body = ErrorBody),
        (status = 409, description = "The password was changed meanwhile (a reset, say); sign \
         in again", body = ErrorBody),
        PasswordGuesses,
        BodyErrors,
        BearerErrors,
    )
)]
async fn set_password(
    State(state): State<AppState>,
    caller: BearerSession,
    ClientInfo(client): ClientInfo,
    ApiJson(change): ApiJson<PasswordChange>,
) -> Result<Json<Ended>> {
    let store = state.store.as_ref();
    let now = state.clock.now();
    let ended = change_password(
        store,
        state.password_check(),
        &state.config.abuse.password_policy,
        &caller.user,
        change.current_password,
        change.new_password,
        caller.session_id,
        now,
    )
    .await?
    .sessions_ended;
    audit::record_detail(
        &state,
        EventKind::PasswordChanged,
        Some(caller.user.id),
        &client,
        "api",
    )
    .await;
    Ok(Json(Ended { ended }))
}
