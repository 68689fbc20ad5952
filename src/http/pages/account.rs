//! The landing page, the account page (profile, sessions, password) and the admin page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::templates::{
    AccountPage, ActivityRow, AdminPage, LandingPage, Nav, PasswordRules, SessionRow,
};
use super::{CsrfForm, NoFields, PageContext, PageError, SignedInPage, render};
use crate::audit::{self, EventKind};
use crate::auth::login::change_password;
use crate::auth::recovery::request_email_change;
use crate::auth::sessions::Authenticated;
use crate::error::Error;
use crate::http::AppState;
use crate::http::extract::{PagePath, PageQuery, path_id};
use crate::http::session::{ClientInfo, sign_in};

/// How many recent events the account page lists.
const RECENT_ACTIVITY: i64 = 10;

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
        "delete-refused" => Some("The password was not right: your account has not been deleted."),
        "delete-superuser" => Some(
            "An administrator's account is deleted by another administrator: your account has not been deleted.",
        ),
        "delete-slowed" => Some(
            "Too many attempts on this account just now: your account has not been deleted. Try again later.",
        ),
        "email-change-sent" => Some(
            "We have sent a confirmation link to the new address. The change applies once you open it.",
        ),
        _ => None,
    }
}

/// Refusals the user can act on, shown beside the form that failed rather than on an error
/// page: a bad field, a wrong current password, too many wrong ones lately, or a password
/// changed meanwhile.
fn shown_on_the_form(err: &Error) -> bool {
    matches!(
        err,
        Error::Validation(_)
            | Error::BadRequest(_)
            | Error::TooManyRequests { .. }
            | Error::Conflict(_)
    )
}

/// A message beside the account page's form that failed, with what the user typed into the
/// email form (passwords are never sent back).
#[derive(Default)]
struct FormErrors {
    password: Option<String>,
    email: Option<String>,
    email_draft: String,
}

async fn account_page(
    state: &AppState,
    page: SignedInPage,
    status: StatusCode,
    notice: Option<&'static str>,
    errors: FormErrors,
) -> Result<Response, PageError> {
    let SignedInPage { ctx, signed_in } = page;
    let sessions = state
        .store
        .list_sessions(signed_in.user.id, state.clock.now())
        .await?;
    let events = audit::recent(state.store.as_ref(), signed_in.user.id, RECENT_ACTIVITY).await?;
    let page = AccountPage {
        nav: Nav::from_context(&ctx),
        user: &signed_in.user,
        member_since: signed_in.user.created_at.format("%-d %B %Y").to_string(),
        sessions: sessions
            .iter()
            .map(|s| SessionRow::new(s, signed_in.session.id))
            .collect(),
        notice,
        password_error: errors.password,
        email_error: errors.email,
        email_draft: errors.email_draft,
        rules: PasswordRules::new(state),
        activity: events.iter().map(ActivityRow::new).collect(),
    };
    Ok((ctx.jar, render(status, &page)).into_response())
}

pub async fn account(
    State(state): State<AppState>,
    page: SignedInPage,
    PageQuery(query): PageQuery<AccountQuery>,
) -> Result<Response, PageError> {
    account_page(
        &state,
        page,
        StatusCode::OK,
        notice_text(query.notice.as_deref()),
        FormErrors::default(),
    )
    .await
}

pub async fn end_session(
    State(state): State<AppState>,
    SignedInPage { signed_in, .. }: SignedInPage,
    ClientInfo(client): ClientInfo,
    PagePath(id): PagePath<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let id = path_id(&id).map_err(|_| Error::NotFound)?;
    if !state.store.delete_session(signed_in.user.id, id).await? {
        return Err(Error::NotFound.into());
    }
    let (user_id, detail) = (Some(signed_in.user.id), format!("session {id}"));
    audit::record_detail(&state, EventKind::SessionEnded, user_id, &client, detail).await;
    if id == signed_in.session.id {
        return Ok(Redirect::to("/login?notice=signed-out").into_response());
    }
    Ok(Redirect::to(&format!("{ACCOUNT}?notice=session-ended")).into_response())
}

pub async fn end_other_sessions(
    State(state): State<AppState>,
    SignedInPage { signed_in, .. }: SignedInPage,
    ClientInfo(client): ClientInfo,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let user_id = signed_in.user.id;
    let ended = state
        .store
        .delete_other_sessions(user_id, Some(signed_in.session.id))
        .await?;
    let detail = format!("{ended} other sessions");
    audit::record_detail(
        &state,
        EventKind::SessionEnded,
        Some(user_id),
        &client,
        detail,
    )
    .await;
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
    ClientInfo(client): ClientInfo,
    CsrfForm(fields): CsrfForm<PasswordFields>,
) -> Result<Response, PageError> {
    let signed_in = &page.signed_in;
    let outcome = change_password(
        state.store.as_ref(),
        state.password_check(),
        &state.config.abuse.password_policy,
        &signed_in.user,
        fields.current_password,
        fields.new_password,
        Some(signed_in.session.id),
        state.clock.now(),
    )
    .await;
    match outcome {
        Ok(changed) => {
            let user_id = Some(signed_in.user.id);
            audit::record_detail(&state, EventKind::PasswordChanged, user_id, &client, "page")
                .await;
            // This browser goes on with a new session token: whoever holds the old cookie
            // (maybe the reason for the change) is signed out with the other sessions.
            let account = Authenticated {
                user: signed_in.user.clone(),
                password_hash: changed.hash,
            };
            let remember = signed_in.session.persistent;
            let jar = page.ctx.jar.clone();
            let jar = sign_in(&state, jar, &account, remember, ClientInfo(client), None).await?;
            let done = Redirect::to(&format!("{ACCOUNT}?notice=password-changed"));
            Ok((jar, done).into_response())
        }
        Err(err) if shown_on_the_form(&err) => {
            let status = err.status();
            let errors = FormErrors {
                password: Some(err.detail()),
                ..FormErrors::default()
            };
            let response = account_page(&state, page, status, None, errors).await?;
            Ok(err.add_retry_after(response))
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

#[derive(Debug, Deserialize)]
pub struct EmailFields {
    #[serde(default)]
    email: String,
    #[serde(default)]
    current_password: String,
}

/// Starts an email change: a link to the new address, a notice to the old one.
pub async fn change_email(
    State(state): State<AppState>,
    page: SignedInPage,
    CsrfForm(fields): CsrfForm<EmailFields>,
) -> Result<Response, PageError> {
    let user = page.signed_in.user.clone();
    let now = state.clock.now();
    let store = state.store.as_ref();
    let outcome = request_email_change(
        store,
        state.password_check(),
        &state.outbound(),
        &user,
        fields.current_password,
        &fields.email,
        now,
    )
    .await;
    match outcome {
        Ok(()) => Ok(Redirect::to(&format!("{ACCOUNT}?notice=email-change-sent")).into_response()),
        Err(err) if shown_on_the_form(&err) => {
            let errors = FormErrors {
                email: Some(err.detail()),
                email_draft: fields.email,
                ..FormErrors::default()
            };
            let response = account_page(&state, page, err.status(), None, errors).await?;
            Ok(err.add_retry_after(response))
        }
        Err(other) => Err(other.into()),
    }
}
