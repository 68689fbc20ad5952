//! The administration API under `/admin/`, for superusers' bearer tokens: find users, look at
//! one (sessions, recent events), disable, enable, promote, demote, end sessions, delete.
//! Everyone else gets 403 `{"detail": "Not enough permissions"}`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::doc_responses::BearerErrors;
use super::docs::{ErrorBody, ValidationErrorBody};
use super::extract::{AdminUser, ApiPath, ApiQuery, path_id};
use super::session::ClientInfo;
use super::sessions::SessionOut;
use crate::admin::{AdminAction, perform};
use crate::error::{Error, FieldError, Result};
use crate::store::{Event, Store, User};

/// Users per page unless `per_page` says otherwise, and the most it may say.
pub const PER_PAGE: u32 = 20;
const MAX_PER_PAGE: u32 = 100;
/// The longest search: an email address (254) is the longest thing it can match. SQLite
/// refuses a `LIKE` pattern over 50,000 bytes outright.
const MAX_QUERY_CHARS: usize = 254;
/// Events shown with a user.
pub const RECENT_EVENTS: i64 = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(show_user, delete_user))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(promote_user))
        .routes(routes!(demote_user))
        .routes(routes!(end_user_sessions))
}

/// A user as administrators see them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserOut {
    id: i64,
    username: String,
    email: Option<String>,
    full_name: Option<String>,
    disabled: bool,
    is_superuser: bool,
    created_at: DateTime<Utc>,
}

impl From<User> for AdminUserOut {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            full_name: user.full_name,
            disabled: user.disabled,
            is_superuser: user.is_superuser,
            created_at: user.created_at,
        }
    }
}

/// One page of a user search.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserListOut {
    users: Vec<AdminUserOut>,
    /// How many users match in all.
    total: i64,
    /// This page, from 1.
    page: u32,
    per_page: u32,
}

/// An entry of a user's audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminEventOut {
    id: i64,
    kind: String,
    detail: Option<String>,
    /// The administrator who did it, if one did.
    actor_id: Option<i64>,
    ip: Option<String>,
    user_agent: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<Event> for AdminEventOut {
    fn from(event: Event) -> Self {
        Self {
            id: event.id,
            kind: event.kind,
            detail: event.detail,
            actor_id: event.actor_id,
            ip: event.ip,
            user_agent: event.user_agent,
            created_at: event.created_at,
        }
    }
}

/// A user with their live sessions and most recent events.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDetailOut {
    user: AdminUserOut,
    sessions: Vec<SessionOut>,
    /// Newest first, at most 20.
    events: Vec<AdminEventOut>,
}

/// The user after an action, and how many sessions it ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionOut {
    user: AdminUserOut,
    sessions_ended: u64,
}

/// `GET /admin/users` parameters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; the handler parses it itself, for 422s
struct ListParams {
    /// Part of a username, email or full name (ignoring case), at most 254 characters;
    /// empty: everyone.
    #[param(max_length = 254)]
    q: Option<String>,
    /// The page, from 1.
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Users per page (20 unless given, at most 100).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
}

/// A search: the query, the page (from 1) and its size.
pub struct Search {
    pub q: String,
    pub page: u32,
    pub per_page: u32,
}

impl Search {
    /// Reads `q`, `page` and `per_page`; a value out of range is a 422 naming it.
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self> {
        let refused = |name: &str, msg: String| {
            Error::Validation(vec![FieldError {
                loc: vec!["query".into(), name.into()],
                msg,
                kind: "value_error".into(),
            }])
        };
        let number = |name: &str, default: u32, max: u32| -> Result<u32> {
            match query.get(name).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(raw) => raw
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| {
                        refused(
                            name,
                            format!("Input should be a whole number from 1 to {max}"),
                        )
                    }),
            }
        };
        let q = query.get("q").cloned().unwrap_or_default();
        if q.chars().count() > MAX_QUERY_CHARS {
            let msg = format!("A search has at most {MAX_QUERY_CHARS} characters");
            return Err(refused("q", msg));
        }
        Ok(Self {
            q,
            page: number("page", 1, 1_000_000)?,
            per_page: number("per_page", PER_PAGE, MAX_PER_PAGE)?,
        })
    }

    pub async fn run(&self, store: &dyn Store) -> Result<crate::store::UserPage> {
        let offset = i64::from(self.page - 1) * i64::from(self.per_page);
        Ok(store
            .search_users(&self.q, i64::from(self.per_page), offset)
            .await?)
    }
}

/// The user with this id (from the path), or 404.
pub async fn target(store: &dyn Store, raw_id: &str) -> Result<User> {
    let id = path_id(raw_id)?;
    store.user_by_id(id).await?.ok_or(Error::NotFound)
}

/// Find users: all of them page by page, or those matching `q`.
#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "admin",
    params(ListParams),
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "One page of matching users, by id", body = UserListOut),
        (status = 403, description = "Not enough permissions: not a superuser", body = ErrorBody),
        (status = 422, description = "`page` or `per_page` out of range", body = ValidationErrorBody),
        BearerErrors,
    )
)]
async fn list_users(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<Json<UserListOut>> {
    let search = Search::from_query(&query)?;
    let found = search.run(state.store.as_ref()).await?;
    Ok(Json(UserListOut {
        users: found.users.into_iter().map(Into::into).collect(),
        total: found.total,
        page: search.page,
        per_page: search.per_page,
    }))
}

/// A user with their live sessions and recent events.
#[utoipa::path(
    get,
    path = "/admin/users/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "The user's id")),
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The user, sessions and events", body = UserDetailOut),
        (status = 403, description = "Not enough permissions: not a superuser", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "The id is not a number", body = ValidationErrorBody),
        BearerErrors,
    )
)]
async fn show_user(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UserDetailOut>> {
    let user = target(state.store.as_ref(), &id).await?;
    let now = state.clock.now();
    let sessions = state.store.list_sessions(user.id, now).await?;
    let events = state.store.recent_events(user.id, RECENT_EVENTS).await?;
    Ok(Json(UserDetailOut {
        user: user.into(),
        sessions: sessions
            .into_iter()
            .map(|s| SessionOut::new(s, None))
            .collect(),
        events: events.into_iter().map(Into::into).collect(),
    }))
}

/// Delete a user with their notes, sessions and tokens (their events stay, without them).
#[utoipa::path(
    delete,
    path = "/admin/users/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "The user's id")),
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Superusers cannot delete themselves here", body = ErrorBody),
        (status = 403, description = "Not enough permissions: not a superuser", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "The id is not a number", body = ValidationErrorBody),
        BearerErrors,
    )
)]
async fn delete_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ClientInfo(client): ClientInfo,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    let user = target(state.store.as_ref(), &id).await?;
    perform(&state, &admin, &client, &user, AdminAction::Delete).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Applies an action and answers with the user as it now is.
async fn act(
    state: &AppState,
    admin: &User,
    client: &crate::auth::sessions::ClientMeta,
    id: &str,
    action: AdminAction,
) -> Result<Json<ActionOut>> {
    let user = target(state.store.as_ref(), id).await?;
    let sessions_ended = perform(state, admin, client, &user, action).await?;
    let user = state
        .store
        .user_by_id(user.id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(Json(ActionOut {
        user: user.into(),
        sessions_ended,
    }))
}

/// Declares one `POST /admin/users/{id}/<action>` operation.
macro_rules! action_route {
    ($name:ident, $path:literal, $action:expr, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            post,
            path = $path,
            tag = "admin",
            params(("id" = i64, Path, description = "The user's id")),
            security(("OAuth2PasswordBearer" = [])),
            responses(
                (status = 200, description = "The user after the action", body = ActionOut),
                (status = 400, description = "Superusers cannot disable or demote themselves here", body = ErrorBody),
                (status = 403, description = "Not enough permissions: not a superuser", body = ErrorBody),
                (status = 404, description = "No such user", body = ErrorBody),
                (status = 422, description = "The id is not a number", body = ValidationErrorBody),
                BearerErrors,
            )
        )]
        async fn $name(
            State(state): State<AppState>,
            AdminUser(admin): AdminUser,
            ClientInfo(client): ClientInfo,
            ApiPath(id): ApiPath<String>,
        ) -> Result<Json<ActionOut>> {
            act(&state, &admin, &client, &id, $action).await
        }
    };
}

action_route!(
    disable_user,
    "/admin/users/{id}/disable",
    AdminAction::Disable,
    "Disable a user: sign-ins are refused and every session ends."
);
action_route!(
    enable_user,
    "/admin/users/{id}/enable",
    AdminAction::Enable,
    "Enable a disabled user."
);
action_route!(
    promote_user,
    "/admin/users/{id}/promote",
    AdminAction::Promote,
    "Make a user a superuser."
);
action_route!(
    demote_user,
    "/admin/users/{id}/demote",
    AdminAction::Demote,
    "Withdraw a user's superuser rights."
);
action_route!(
    end_user_sessions,
    "/admin/users/{id}/end-sessions",
    AdminAction::EndSessions,
    "End every session of a user (browser and API) without disabling them."
);
