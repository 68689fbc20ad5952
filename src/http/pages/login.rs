//! Log in, sign up and log out.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::templates::{LoginPage, Nav, SignupForm, SignupPage};
use super::{CsrfForm, NoFields, PageContext, PageError, render, safe_next};
use crate::auth::login::authenticate;
use crate::error::Error;
use crate::http::AppState;
use crate::http::session::{ClientInfo, end_session, sign_in};
use crate::http::users::{SignUpRequest, register};

const AFTER_LOGIN: &str = "/account";

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    notice: Option<String>,
}

/// Messages the login page can show after a redirect; the query names one, never the text.
fn notice_text(code: Option<&str>) -> Option<&'static str> {
    match code? {
        "signed-out" => Some("You have been signed out."),
        "signed-in-required" => Some("Please sign in to continue."),
        _ => None,
    }
}

pub async fn show_login(ctx: PageContext, Query(query): Query<LoginQuery>) -> Response {
    if ctx.user.is_some() {
        return Redirect::to(&safe_next(query.next.as_deref(), AFTER_LOGIN)).into_response();
    }
    let page = LoginPage {
        nav: Nav::from_context(&ctx),
        username: String::new(),
        next: safe_next(query.next.as_deref(), ""),
        error: None,
        notice: notice_text(query.notice.as_deref()),
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
    CsrfForm(form): CsrfForm<LoginForm>,
) -> Result<Response, PageError> {
    let next = safe_next(form.next.as_deref(), AFTER_LOGIN);
    match authenticate(
        state.store.as_ref(),
        &state.hasher,
        &form.username,
        form.password,
    )
    .await
    {
        Ok(user) => {
            let remember = form
                .remember_me
                .is_some_and(|v| !v.is_empty() && v != "off");
            let jar = sign_in(&state, ctx.jar, &user, remember, client).await?;
            tracing::info!(
                user_id = user.id,
                remember,
                "signed in through the login page"
            );
            Ok((jar, Redirect::to(&next)).into_response())
        }
        Err(err @ (Error::Unauthorized(_) | Error::InactiveUser)) => {
            let page = LoginPage {
                nav: Nav::from_context(&ctx),
                username: form.username,
                next: safe_next(form.next.as_deref(), ""),
                error: Some(err.detail()),
                notice: None,
            };
            Ok((ctx.jar, render(err.status(), &page)).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn show_signup(ctx: PageContext) -> Response {
    if ctx.user.is_some() {
        return Redirect::to(AFTER_LOGIN).into_response();
    }
    let page = SignupPage {
        nav: Nav::from_context(&ctx),
        form: SignupForm::default(),
    };
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
    CsrfForm(fields): CsrfForm<SignupFields>,
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
    let outcome = match request.validate() {
        Ok(valid) => register(&state, valid).await,
        Err(err) => Err(err),
    };
    match outcome {
        Ok(user) => {
            let jar = sign_in(&state, ctx.jar, &user, false, client).await?;
            tracing::info!(user_id = user.id, "user signed up through the sign-up page");
            Ok((jar, Redirect::to(AFTER_LOGIN)).into_response())
        }
        Err(err @ (Error::Validation(_) | Error::Conflict(_))) => {
            let status = err.status();
            attach_errors(&mut form, err);
            let page = SignupPage {
                nav: Nav::from_context(&ctx),
                form,
            };
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
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let jar = end_session(&state, ctx.jar).await?;
    Ok((jar, Redirect::to("/login?notice=signed-out")).into_response())
}
