//! The admin console: `/admin` lists and searches users for superusers (anyone else sees
//! their name, as in the tutorial), `/admin/people/{id}` shows one with their sessions and
//! recent events, and its forms act on them. Plain forms, POST then redirect; actions go
//! through `crate::admin`, as the JSON API's do, and land in the audit trail.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};

use super::templates::{Nav, SessionRow};
use super::{CsrfForm, NoFields, PageError, SignedInPage, render};
use crate::admin::{AdminAction, perform};
use crate::audit::EventKind;
use crate::error::Error;
use crate::http::AppState;
use crate::http::admin::{RECENT_EVENTS, Search, target};
use crate::http::extract::{PagePath, PageQuery};
use crate::http::session::ClientInfo;
use crate::store::{Event, User};

/// A page for superusers only; other signed-in users get a 403 page.
pub struct SuperuserPage(pub SignedInPage);

impl FromRequestParts<AppState> for SuperuserPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let page = SignedInPage::from_request_parts(parts, state).await?;
        if !page.signed_in.user.is_superuser {
            let refused = Error::Forbidden("Not enough permissions".into());
            return Err(PageError::Service(refused).into_response());
        }
        Ok(Self(page))
    }
}

#[derive(Template)]
#[template(path = "admin_console.html")]
struct ConsolePage<'a> {
    nav: Nav,
    username: &'a str,
    notice: Option<&'static str>,
    q: String,
    users: Vec<User>,
    total: i64,
    page: u32,
    pages: i64,
    previous: Option<String>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_user.html")]
struct UserPage {
    nav: Nav,
    user: User,
    /// The superuser's own account: the actions refused on it are not offered.
    is_self: bool,
    notice: Option<&'static str>,
    sessions: Vec<SessionRow>,
    events: Vec<EventRow>,
}

/// One line of a user's recent events.
struct EventRow {
    description: &'static str,
    detail: Option<String>,
    actor_id: Option<i64>,
    ip: Option<String>,
    when: String,
}

impl From<Event> for EventRow {
    fn from(event: Event) -> Self {
        Self {
            description: EventKind::describe(&event.kind),
            when: event.created_at.format("%-d %b %Y, %H:%M UTC").to_string(),
            detail: event.detail,
            actor_id: event.actor_id,
            ip: event.ip,
        }
    }
}

#[derive(Template)]
#[template(path = "admin_delete.html")]
struct DeletePage {
    nav: Nav,
    user: User,
}

/// Messages after a redirect; the query names one, never the text.
fn notice_text(code: Option<&String>) -> Option<&'static str> {
    Some(match code?.as_str() {
        "disabled" => "The user has been disabled and their sessions ended.",
        "enabled" => "The user has been enabled.",
        "promoted" => "The user is now a superuser.",
        "demoted" => "The user is no longer a superuser.",
        "sessions-ended" => "All of the user's sessions have been ended.",
        "deleted" => "The user has been deleted.",
        _ => return None,
    })
}

/// `/admin`: the console for superusers; anyone else sees their name and a link to their account.
pub async fn home(
    State(state): State<AppState>,
    page: SignedInPage,
    PageQuery(query): PageQuery<HashMap<String, String>>,
) -> Result<Response, PageError> {
    if !page.signed_in.user.is_superuser {
        return Ok(super::account::admin(page).await);
    }
    let SignedInPage { ctx, signed_in } = page;
    let search = Search::from_query(&query)?;
    let found = search.run(state.store.as_ref()).await?;
    let pages =
        ((found.total + i64::from(search.per_page) - 1) / i64::from(search.per_page)).max(1);
    // The links keep the search and the page size; past the last page, "Previous" goes to it.
    let link = |page: u32| {
        let q: String = url::form_urlencoded::byte_serialize(search.q.as_bytes()).collect();
        format!("/admin?q={q}&page={page}&per_page={}", search.per_page)
    };
    let last = u32::try_from(pages).unwrap_or(u32::MAX);
    let console = ConsolePage {
        nav: Nav::from_context(&ctx),
        username: &signed_in.user.username,
        notice: notice_text(query.get("notice")),
        q: search.q.clone(),
        users: found.users,
        total: found.total,
        page: search.page,
        pages,
        previous: (search.page > 1).then(|| link((search.page - 1).min(last))),
        next: (i64::from(search.page) < pages).then(|| link(search.page + 1)),
    };
    Ok((ctx.jar, render(StatusCode::OK, &console)).into_response())
}

/// `/admin/people/{id}`: a user with their sessions and recent events, and the actions.
pub async fn show_user(
    State(state): State<AppState>,
    SuperuserPage(SignedInPage { ctx, signed_in }): SuperuserPage,
    PagePath(id): PagePath<String>,
    PageQuery(query): PageQuery<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let user = find(&state, &id).await?;
    let is_self = user.id == signed_in.user.id;
    let sessions = state
        .store
        .list_sessions(user.id, state.clock.now())
        .await?;
    let events = state.store.recent_events(user.id, RECENT_EVENTS).await?;
    let page = UserPage {
        nav: Nav::from_context(&ctx),
        notice: notice_text(query.get("notice")),
        sessions: sessions.iter().map(|s| SessionRow::new(s, -1)).collect(),
        events: events.into_iter().map(EventRow::from).collect(),
        user,
        is_self,
    };
    Ok((ctx.jar, render(StatusCode::OK, &page)).into_response())
}

/// `GET /admin/people/{id}/delete`: the confirmation step before a deletion.
pub async fn confirm_action(
    State(state): State<AppState>,
    SuperuserPage(SignedInPage { ctx, .. }): SuperuserPage,
    PagePath((id, action)): PagePath<(String, String)>,
) -> Result<Response, PageError> {
    if action != "delete" {
        return Err(Error::NotFound.into());
    }
    let user = find(&state, &id).await?;
    let page = DeletePage {
        nav: Nav::from_context(&ctx),
        user,
    };
    Ok((ctx.jar, render(StatusCode::OK, &page)).into_response())
}

/// `POST /admin/people/{id}/{action}`: disable, enable, promote, demote, end-sessions, delete.
pub async fn act(
    State(state): State<AppState>,
    SuperuserPage(SignedInPage { signed_in, .. }): SuperuserPage,
    ClientInfo(client): ClientInfo,
    PagePath((id, action)): PagePath<(String, String)>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let action = AdminAction::from_segment(&action).ok_or(Error::NotFound)?;
    let user = find(&state, &id).await?;
    perform(&state, &signed_in.user, &client, &user, action).await?;
    let notice = match action {
        AdminAction::Delete => return Ok(Redirect::to("/admin?notice=deleted").into_response()),
        AdminAction::Disable => "disabled",
        AdminAction::Enable => "enabled",
        AdminAction::Promote => "promoted",
        AdminAction::Demote => "demoted",
        AdminAction::EndSessions => "sessions-ended",
    };
    Ok(Redirect::to(&format!("/admin/people/{}?notice={notice}", user.id)).into_response())
}

/// The user with this id; a malformed id is a missing page.
async fn find(state: &AppState, id: &str) -> Result<User, PageError> {
    target(state.store.as_ref(), id)
        .await
        .map_err(|err| match err {
            Error::Validation(_) => Error::NotFound.into(),
            other => other.into(),
        })
}
