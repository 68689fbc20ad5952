//! Log in, sign up and log out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::templates::{LoginPage, Nav, SignupForm, SignupPage};
use super::{CsrfForm, NoFields, PageContext, PageError, render, safe_next};
use crate::audit::{self, EventKind};
use crate::auth::recovery::ensure_verified;
use crate::error::Error;
use crate::http::AppState;
use crate::http::extract::PageQuery;
use crate::http::password_login::{check_password_login, count_success};
use crate::http::rate_limit::{Login, PerIpPage, Signup};
use crate::http::session::{ClientInfo, end_session, sign_in};
use crate::http::users::{SignUpRequest, register};
use crate::metrics::LoginChannel;

const AFTER_LOGIN: &str = "/account";

/// What the login form says to the right password of a disabled account.
const DISABLED_ACCOUNT: &str =
    "This account has been disabled. Ask an administrator of this service to enable it.";

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    notice: Option<String>,
}

/// Messages the login page can show after a redirect; the query names one, never the text.
fn notice_text(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "signed-out" => Some("You have been signed out."),
        "account-created" => Some("Your account has been created. Log in to continue."),
        "account-deleted" => Some("Your account has been deleted."),
        "signed-in-required" => Some("Please sign in to continue."),
        "password-reset" => Some("Your password has been reset. Log in with the new one."),
        "verify-email" => {
            Some("We have sent you a link to confirm your email address. Open it, then log in.")
        }
        _ => None,
    }
}

pub async fn show_login(ctx: PageContext, PageQuery(query): PageQuery<LoginQuery>) -> Response {
    if ctx.user.is_some() {
        return Redirect::to(&safe_next(query.next.as_deref(), AFTER_LOGIN)).into_response();
    }
    let page = LoginPage {
        nav: Nav::from_context(&ctx),
        username: String::new(),
        next: safe_next(query.next.as_deref(), ""),
        error: None,
        notice: notice_text(query.notice.as_deref()),
        unverified: false,
    };
    (ctx.jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(rename = "remember-me")]
    remember_me: Option<String>,
    next: Option<String>,
}

pub async fn submit_login(
    State(state): State<AppState>,
    ctx: PageContext,
    client: ClientInfo,
    _: PerIpPage<Login>,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<Response, PageError> {
    state
        .on_password_lane(|state| log_in(state, ctx, client, form))
        .await?
}

/// The work of `submit_login`, on the password lane (`crate::http::PasswordLane`).
async fn log_in(
    state: AppState,
    ctx: PageContext,
    client: ClientInfo,
    form: LoginForm,
) -> Result<Response, PageError> {
    let next = safe_next(form.next.as_deref(), AFTER_LOGIN);
    let now = state.clock.now();
    let channel = LoginChannel::Page;
    let (username, password) = (&form.username, form.password);
    let remember = form
        .remember_me
        .is_some_and(|v| !v.is_empty() && v != "off");
    // A session that does not start (the account changed while its password was checked) is
    // refused like a wrong password, on the form.
    let signed_in =
        match check_password_login(&state, channel, username, password, &client.0, now).await {
            Ok(account) => {
                let event = audit::login_success_event(&state, &account.user, &client.0, channel);
                let jar = ctx.jar.clone();
                sign_in(&state, jar, &account, remember, client, Some(event))
                    .await
                    .map(|jar| (jar, account.user.id))
            }
            Err(refused) => Err(refused),
        };
    match signed_in {
        Ok((jar, user_id)) => {
            count_success(&state, channel);
            tracing::info!(user_id, remember, "signed in through the login page");
            Ok((jar, Redirect::to(&next)).into_response())
        }
        Err(
            err @ (Error::Unauthorized(_)
            | Error::InactiveUser
            | Error::Forbidden(_)
            | Error::TooManyRequests { .. }),
        ) => {
            let page = LoginPage {
                nav: Nav::from_context(&ctx),
                username: form.username,
                next: safe_next(form.next.as_deref(), ""),
                error: Some(match err {
                    // The API keeps the tutorial's terse words; a person needs what to do.
                    Error::InactiveUser => DISABLED_ACCOUNT.to_string(),
                    _ => err.detail(),
                }),
                notice: None,
                unverified: matches!(err, Error::Forbidden(_)),
            };
            let response = (ctx.jar, render(err.status(), &page)).into_response();
            Ok(err.add_retry_after(response))
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn show_signup(State(state): State<AppState>, ctx: PageContext) -> Response {
    if ctx.user.is_some() {
        return Redirect::to(AFTER_LOGIN).into_response();
    }
    let page = SignupPage::new(&state, &ctx, SignupForm::default());
    (ctx.jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct SignupFields {
    username: String,
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    full_name: String,
}

pub async fn submit_signup(
    State(state): State<AppState>,
    ctx: PageContext,
    client: ClientInfo,
    _: PerIpPage<Signup>,
    CsrfForm(fields): CsrfForm<SignupFields>,
) -> Result<Response, PageError> {
    state
        .on_password_lane(|state| sign_up(state, ctx, client, fields))
        .await?
}

/// The work of `submit_signup`, on the password lane (`crate::http::PasswordLane`).
async fn sign_up(
    state: AppState,
    ctx: PageContext,
    client: ClientInfo,
    fields: SignupFields,
) -> Result<Response, PageError> {
    let mut form = SignupForm {
        username: fields.username.clone(),
        email: fields.email.clone(),
        full_name: fields.full_name.clone(),
        ..SignupForm::default()
    };
    let request = SignUpRequest {
        username: fields.username,
        password: fields.password,
        email: Some(fields.email),
        full_name: Some(fields.full_name),
    };
    let outcome = match request.validate(&state.config.abuse.password_policy) {
        Ok(valid) => register(&state, valid).await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(account) => {
            let user_id = account.user.id;
            audit::record_detail(&state, EventKind::Signup, Some(user_id), &client.0, "page").await;
            if ensure_verified(&state.config.mail, &account.user).is_err() {
                return Ok(Redirect::to("/login?notice=verify-email").into_response());
            }
            let jar = match sign_in(&state, ctx.jar, &account, false, client, None).await {
                Ok(jar) => jar,
                Err(err) => {
                    // The account stands: an error page now would make the retry "username
                    // taken". The login form starts the session instead.
                    tracing::warn!(error = %err, user_id, "signed up, but the session could not start");
                    return Ok(Redirect::to("/login?notice=account-created").into_response());
                }
            };
            tracing::info!(user_id, "user signed up through the sign-up page");
            Ok((jar, Redirect::to(AFTER_LOGIN)).into_response())
        }
        Err(err @ (Error::Validation(_) | Error::Conflict(_))) => {
            let status = err.status();
            attach_errors(&mut form, err);
            let page = SignupPage::new(&state, &ctx, form);
            Ok((ctx.jar, render(status, &page)).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

/// Puts each message beside its field, as the API reports them.
fn attach_errors(form: &mut SignupForm, err: Error) {
    match err {
        Error::Validation(errors) => {
            for e in errors {
                let slot = match e.loc.last().map(String::as_str) {
                    Some("email") => &mut form.email_error,
                    Some("full_name") => &mut form.full_name_error,
                    Some("password") => &mut form.password_error,
                    _ => &mut form.username_error,
                };
                slot.get_or_insert(e.msg);
            }
        }
        other => form.username_error = Some(other.detail()),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    ctx: PageContext,
    ClientInfo(client): ClientInfo,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let user_id = ctx.user.as_ref().map(|s| s.user.id);
    let jar = end_session(&state, ctx.jar).await?;
    if user_id.is_some() {
        audit::record_detail(&state, EventKind::Logout, user_id, &client, "page").await;
    }
    Ok((jar, Redirect::to("/login?notice=signed-out")).into_response())
}
