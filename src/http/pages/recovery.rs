//! Pages of the email flows: forgot password, reset password, confirm email address.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::templates::{
    ErrorPage, ForgotPasswordPage, Nav, PasswordRules, ResetPasswordPage, VerifyEmailPage,
};
use super::{CsrfForm, PageContext, PageError, render};
use crate::audit::{self, EventKind};
use crate::auth::recovery::{
    LINK_INVALID, confirm_email, confirm_password_reset, link_lifetime, reset_link_owner,
    verification_link_is_live,
};
use crate::error::Error;
use crate::http::AppState;
use crate::http::extract::PageQuery;
use crate::http::recovery::{RESET_SENT, VERIFICATION_SENT, start_resend, start_reset};
use crate::http::session::{ClientInfo, host_cookie_name, removal_cookie, secure_cookie};
use crate::store::EmailTokenPurpose;

pub async fn show_forgot(ctx: PageContext) -> Response {
    let page = ForgotPasswordPage {
        nav: Nav::from_context(&ctx),
        notice: None,
        error: None,
    };
    (ctx.jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct ForgotFields {
    #[serde(default)]
    identifier: String,
}

pub async fn submit_forgot(
    State(state): State<AppState>,
    ctx: PageContext,
    _: crate::http::rate_limit::PerIpPage<crate::http::rate_limit::PasswordReset>,
    ClientInfo(client): ClientInfo,
    CsrfForm(fields): CsrfForm<ForgotFields>,
) -> Response {
    let identifier = fields.identifier.trim().to_string();
    let (status, notice, error) = if identifier.is_empty() {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            Some("Enter your email address or username.".to_string()),
        )
    } else {
        start_reset(&state, identifier, client, "page");
        (StatusCode::OK, Some(RESET_SENT), None)
    };
    let page = ForgotPasswordPage {
        nav: Nav::from_context(&ctx),
        notice,
        error,
    };
    (ctx.jar, render(status, &page)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The page an emailed link opens. Each moves the link's token into a cookie and redirects
/// to its bare address, so the token leaves the address bar at once: it stays out of the
/// browser's history and of the `Referer` the page's own requests send (proxies log both).
/// The page then carries it in its form, and the cookie goes once the link is used.
#[derive(Debug, Clone, Copy)]
enum LinkPage {
    ResetPassword,
    VerifyEmail,
}

impl LinkPage {
    fn path(self) -> &'static str {
        match self {
            Self::ResetPassword => "/reset-password",
            Self::VerifyEmail => "/verify-email",
        }
    }

    fn purpose(self) -> EmailTokenPurpose {
        match self {
            Self::ResetPassword => EmailTokenPurpose::PasswordReset,
            Self::VerifyEmail => EmailTokenPurpose::VerifyEmail,
        }
    }

    /// The cookie that keeps the token: `__Host-` over https, like the session cookie.
    fn cookie_name(self, state: &AppState) -> &'static str {
        let name = match self {
            Self::ResetPassword => "__Host-gatehouse_reset",
            Self::VerifyEmail => "__Host-gatehouse_verify",
        };
        host_cookie_name(&state.config, name)
    }

    /// The link opened: from the address, the cookie and a redirect to the bare page; on
    /// the bare page, the token the cookie keeps.
    fn open(self, state: &AppState, jar: CookieJar, from_address: String) -> Opened {
        let name = self.cookie_name(state);
        if !from_address.is_empty() {
            let ttl = link_lifetime(&state.config.mail, self.purpose());
            let cookie = secure_cookie(&state.config, name, from_address, Some(ttl));
            return Opened::Redirect((jar.add(cookie), Redirect::to(self.path())).into_response());
        }
        let token = jar.get(name).map(|c| c.value().to_string());
        Opened::Page(jar, token.unwrap_or_default())
    }

    /// The cookie's removal, once the link is used.
    fn forget(self, state: &AppState, jar: CookieJar) -> CookieJar {
        jar.remove(removal_cookie(&state.config, self.cookie_name(state)))
    }
}

/// What `LinkPage::open` found.
enum Opened {
    /// The link itself: its answer moves the token into the cookie.
    Redirect(Response),
    /// The bare page, with the cookies and the token.
    Page(CookieJar, String),
}

/// The reset link's page: a form for the new password.
pub async fn show_reset(
    State(state): State<AppState>,
    ctx: PageContext,
    PageQuery(query): PageQuery<TokenQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::from_context(&ctx);
    let (jar, token) = match LinkPage::ResetPassword.open(&state, ctx.jar, query.token) {
        Opened::Page(jar, token) => (jar, token),
        Opened::Redirect(redirect) => return Ok(redirect),
    };
    reset_page(&state, nav, jar, token, None).await
}

/// The reset page for the link `token`: its form, with `error` from the last try, while the
/// link is live; once it is not, the way to a new link (and the link's cookie goes).
async fn reset_page(
    state: &AppState,
    nav: Nav,
    jar: CookieJar,
    token: String,
    error: Option<String>,
) -> Result<Response, PageError> {
    // No token (the page opened without its link's cookie) needs no lookup.
    let account = match token.is_empty() {
        true => None,
        false => reset_link_owner(state.store.as_ref(), &token, state.clock.now()).await?,
    };
    let (status, jar) = match (&account, &error) {
        (None, _) => (
            StatusCode::BAD_REQUEST,
            LinkPage::ResetPassword.forget(state, jar),
        ),
        (Some(_), Some(_)) => (StatusCode::UNPROCESSABLE_ENTITY, jar),
        (Some(_), None) => (StatusCode::OK, jar),
    };
    let page = ResetPasswordPage {
        nav,
        token,
        account,
        rules: PasswordRules::new(state),
        error,
    };
    Ok((jar, render(status, &page)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ResetFields {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

pub async fn submit_reset(
    State(state): State<AppState>,
    ctx: PageContext,
    ClientInfo(client): ClientInfo,
    CsrfForm(fields): CsrfForm<ResetFields>,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let store = state.store.as_ref();
    let outcome = confirm_password_reset(
        store,
        &state.hasher,
        &state.outbound(),
        &state.config.abuse.password_policy,
        &fields.token,
        fields.new_password,
        now,
    )
    .await;
    match outcome {
        Ok(user) => {
            let kind = EventKind::PasswordReset;
            audit::record_detail(&state, kind, Some(user.id), &client, "page").await;
            let jar = LinkPage::ResetPassword.forget(&state, ctx.jar);
            Ok((jar, Redirect::to("/login?notice=password-reset")).into_response())
        }
        // A refused password, or a dead link: the page says which (and a dead link's cookie
        // goes with it).
        Err(err @ (Error::Validation(_) | Error::BadRequest(_))) => {
            let nav = Nav::from_context(&ctx);
            reset_page(&state, nav, ctx.jar, fields.token, Some(err.detail())).await
        }
        Err(other) => Err(other.into()),
    }
}

/// The link in a confirmation email: a page with a button that confirms the address. Only
/// the button's POST changes anything, so a mail scanner or a link preview that fetches the
/// link confirms nothing (an address someone else typed into their account included).
pub async fn show_verify_email(
    State(state): State<AppState>,
    ctx: PageContext,
    PageQuery(query): PageQuery<TokenQuery>,
) -> Result<Response, PageError> {
    let nav = Nav::from_context(&ctx);
    let (jar, token) = match LinkPage::VerifyEmail.open(&state, ctx.jar, query.token) {
        Opened::Page(jar, token) => (jar, token),
        Opened::Redirect(redirect) => return Ok(redirect),
    };
    if !verification_link_is_live(state.store.as_ref(), &token, state.clock.now()).await? {
        let dead = PageError::from(Error::BadRequest(LINK_INVALID.into()));
        return Ok((LinkPage::VerifyEmail.forget(&state, jar), dead).into_response());
    }
    let page = VerifyEmailPage { nav, token };
    Ok((jar, render(StatusCode::OK, &page)).into_response())
}

/// The confirmation page's button: proves the address and says so.
pub async fn verify_email(
    State(state): State<AppState>,
    ctx: PageContext,
    ClientInfo(client): ClientInfo,
    CsrfForm(fields): CsrfForm<TokenQuery>,
) -> Result<Response, PageError> {
    let user = match confirm_email(state.store.as_ref(), &fields.token, state.clock.now()).await {
        Ok(user) => user,
        // A dead link's cookie goes with it; a database away keeps it for the retry.
        Err(dead @ Error::BadRequest(_)) => {
            let jar = LinkPage::VerifyEmail.forget(&state, ctx.jar);
            return Ok((jar, PageError::from(dead)).into_response());
        }
        Err(other) => return Err(other.into()),
    };
    audit::record(&state, EventKind::EmailVerified, Some(user.id), &client).await;
    let message = format!(
        "The address {} is now confirmed for the account {}.",
        user.email.as_deref().unwrap_or_default(),
        user.username
    );
    let page = ErrorPage {
        nav: Nav::from_context(&ctx),
        title: "Email address confirmed",
        message: &message,
    };
    let jar = LinkPage::VerifyEmail.forget(&state, ctx.jar);
    Ok((jar, render(StatusCode::OK, &page)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ResendFields {
    #[serde(default)]
    username: String,
}

/// "Send the link again" from the login page.
pub async fn resend_verification(
    // Sends an email, as the forgot-password form does, and shares its limit.
    _: crate::http::rate_limit::PerIpPage<crate::http::rate_limit::PasswordReset>,
    State(state): State<AppState>,
    CsrfForm(fields): CsrfForm<ResendFields>,
) -> Response {
    start_resend(&state, fields.username);
    let page = ErrorPage {
        nav: Nav::anonymous(),
        title: "Check your inbox",
        message: VERIFICATION_SENT,
    };
    render(StatusCode::ACCEPTED, &page)
}
