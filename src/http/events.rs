//! `GET /users/me/events`: the caller's recent account activity from the audit trail.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc_responses::BearerErrors;
use super::{AppState, AuthUser};
use crate::audit;
use crate::error::Result;
use crate::store::Event;

/// How many events the caller sees.
const RECENT: i64 = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(my_events))
}

/// One entry of the caller's activity.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    id: i64,
    /// `signup`, `login_success`, `login_failure`, `logout`, `session_ended`,
    /// `refresh_token_reuse`, `password_changed`, `password_reset_requested`,
    /// `password_reset`, `email_verified`, `throttled` or `admin_action`.
    kind: String,
    /// The same, in words.
    description: &'static str,
    /// `api` or `page` for logins (`api: address not confirmed` for a login refused until the
    /// address is confirmed), or a short note; never a secret.
    detail: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    /// Whether another user (an administrator) did it.
    by_someone_else: bool,
    created_at: DateTime<Utc>,
}

impl EventOut {
    fn new(event: Event) -> Self {
        Self {
            id: event.id,
            description: audit::EventKind::describe(&event.kind),
            by_someone_else: event.actor_id.is_some_and(|a| Some(a) != event.user_id),
            kind: event.kind,
            detail: event.detail,
            ip: event.ip,
            user_agent: event.user_agent,
            created_at: event.created_at,
        }
    }
}

/// The caller's most recent account activity (at most 50 events), newest first.
#[utoipa::path(
    get,
    path = "/users/me/events",
    tag = "users",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "Recent activity, newest first", body = Vec<EventOut>,
         headers(("Cache-Control" = String, description = "`no-store`"))),
        BearerErrors,
    )
)]
async fn my_events(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<EventOut>>> {
    let events = audit::recent(state.store.as_ref(), user.id, RECENT).await?;
    Ok(Json(events.into_iter().map(EventOut::new).collect()))
}
