//! The landing page, the account page (profile, sessions, password) and the admin page.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::templates::{AccountPage, AdminPage, LandingPage, Nav, SessionRow};
use super::{CsrfForm, NoFields, PageContext, PageError, SignedInPage, render};
use crate::auth::login::change_password;
use crate::error::Error;
use crate::http::AppState;
use crate::http::extract::path_id;

const ACCOUNT: &str = "/account";

pub async fn landing(ctx: PageContext) -> Response {
    let page = LandingPage {
        nav: Nav::from_context(&ctx),
    };
    (ctx.jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct AccountQuery {
    notice: Option<String>,
}

/// Messages the account page can show after a redirect; the query names one, never the text.
fn notice_text(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "password-changed" => {
            Some("Your password has been changed. Your other sessions have been ended.")
        }
        "session-ended" => Some("The session has been ended."),
        "others-ended" => Some("All your other sessions have been ended."),
        _ => None,
    }
}

async fn account_page(
    state: &AppState,
    page: SignedInPage,
    status: StatusCode,
    notice: Option<&'static str>,
    password_error: Option<String>,
) -> Result<Response, PageError> {
    let SignedInPage { ctx, signed_in } = page;
    let sessions = state
        .store
        .list_sessions(signed_in.user.id, state.clock.now())
        .await?;
    let page = AccountPage {
        nav: Nav::from_context(&ctx),
        user: &signed_in.user,
        member_since: signed_in.user.created_at.format("%-d %B %Y").to_string(),
        sessions: sessions
            .iter()
            .map(|s| SessionRow::new(s, signed_in.session.id))
            .collect(),
        notice,
        password_error,
    };
    Ok((ctx.jar, render(status, &page)).into_response())
}

pub async fn account(
    State(state): State<AppState>,
    page: SignedInPage,
    Query(query): Query<AccountQuery>,
) -> Result<Response, PageError> {
    account_page(
        &state,
        page,
        StatusCode::OK,
        notice_text(query.notice.as_deref()),
        None,
    )
    .await
}

pub async fn end_session(
    State(state): State<AppState>,
    SignedInPage { signed_in, .. }: SignedInPage,
    Path(id): Path<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let id = path_id(&id).map_err(|_| Error::NotFound)?;
    if !state.store.delete_session(signed_in.user.id, id).await? {
        return Err(Error::NotFound.into());
    }
    if id == signed_in.session.id {
        return Ok(Redirect::to("/login?notice=signed-out").into_response());
    }
    Ok(Redirect::to(&format!("{ACCOUNT}?notice=session-ended")).into_response())
}

pub async fn end_other_sessions(
    State(state): State<AppState>,
    SignedInPage { signed_in, .. }: SignedInPage,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let user_id = signed_in.user.id;
    state
        .store
        .delete_other_sessions(user_id, Some(signed_in.session.id))
        .await?;
    Ok(Redirect::to(&format!("{ACCOUNT}?notice=others-ended")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct PasswordFields {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn set_password(
    State(state): State<AppState>,
    page: SignedInPage,
    CsrfForm(fields): CsrfForm<PasswordFields>,
) -> Result<Response, PageError> {
    let signed_in = &page.signed_in;
    let outcome = change_password(
        state.store.as_ref(),
        &state.hasher,
        &signed_in.user,
        fields.current_password,
        fields.new_password,
        Some(signed_in.session.id),
        state.clock.now(),
    )
    .await;
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("{ACCOUNT}?notice=password-changed")).into_response()),
        Err(err @ (Error::Validation(_) | Error::BadRequest(_))) => {
            let status = err.status();
            account_page(&state, page, status, None, Some(err.detail())).await
        }
        Err(other) => Err(other.into()),
    }
}

/// As in the tutorial: the signed-in user's name. The console for superusers grows here.
pub async fn admin(SignedInPage { ctx, signed_in }: SignedInPage) -> Response {
    let page = AdminPage {
        nav: Nav::from_context(&ctx),
        username: &signed_in.user.username,
    };
    (ctx.jar, render(StatusCode::OK, &page)).into_response()
}
