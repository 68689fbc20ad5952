//! The pages Gatehouse serves itself: landing, log in, sign up, account, notes, admin.
//! They work without JavaScript: plain forms, POST then redirect (303).

mod account;
mod account_delete;
mod admin;
mod context;
mod login;
mod notes;
mod recovery;
mod redirect;
mod templates;

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

pub use context::{CsrfForm, NoFields, PageContext, SignedInPage};
pub use redirect::safe_next;

use super::extract::bearer_token;
use super::{AppState, temporary_redirect};
use crate::error::Error;
use templates::ErrorPage;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(account::landing))
        .route("/login", get(login::show_login).post(login::submit_login))
        .route(
            "/signup",
            get(login::show_signup).post(login::submit_signup),
        )
        .route("/account/logout", axum::routing::post(login::logout))
        .route(
            "/forgot-password",
            get(recovery::show_forgot).post(recovery::submit_forgot),
        )
        .route(
            "/reset-password",
            get(recovery::show_reset).post(recovery::submit_reset),
        )
        .route(
            "/verify-email",
            get(recovery::show_verify_email).post(recovery::verify_email),
        )
        .route(
            "/verify-email/send-again",
            axum::routing::post(recovery::resend_verification),
        )
        .route("/account", get(account::account))
        .route("/account/email", axum::routing::post(account::change_email))
        .route(
            "/account/password",
            axum::routing::post(account::set_password),
        )
        .route(
            "/account/sessions/end-others",
            axum::routing::post(account::end_other_sessions),
        )
        .route(
            "/account/sessions/{id}/end",
            axum::routing::post(account::end_session),
        )
        .route("/admin", get(admin::home))
        .route("/admin/people/{id}", get(admin::show_user))
        .route(
            "/admin/people/{id}/{action}",
            get(admin::confirm_action).post(admin::act),
        )
        .route(
            "/account/delete",
            axum::routing::post(account_delete::delete_account),
        )
        .route(
            "/notes",
            get(notes::show_notes)
                .post(notes::add_note)
                .route_layer(axum::middleware::from_fn(bearer_clients_to_the_api)),
        )
        .route(
            "/notes/{id}/toggle",
            axum::routing::post(notes::toggle_note),
        )
        .route(
            "/notes/{id}/delete",
            axum::routing::post(notes::delete_note),
        )
        .route("/static/app.css", get(stylesheet))
        .route("/static/password-hint.js", get(password_hint_script))
}

/// `/notes` is a page, and `/notes/` the API. A client that sends a bearer token to `/notes`
/// means the API: it is sent on there with a 307, which keeps the method and the body, as
/// FastAPI answers a path without its trailing slash, instead of to the login page. (Not any
/// `Authorization`: a browser behind HTTP Basic sends one with every page.)
async fn bearer_clients_to_the_api(req: axum::extract::Request, next: Next) -> Response {
    if bearer_token(req.headers()).is_none() {
        return next.run(req).await;
    }
    temporary_redirect("/notes/", req.uri())
}

async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        include_str!("../../../static/app.css"),
    )
        .into_response()
}

/// The live password hint of the sign-up and password forms: a file, so the
/// Content-Security-Policy needs no inline script.
async fn password_hint_script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        include_str!("../../../static/password-hint.js"),
    )
        .into_response()
}

/// Renders a template, or a plain 500 if the template itself fails (a bug, logged).
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response()
        }
    }
}

/// Why a page could not be shown; rendered as a readable page, never as JSON.
#[derive(Debug)]
pub enum PageError {
    /// A form without a valid CSRF token, or sent from another origin.
    Forbidden,
    Service(Error),
}

impl From<crate::store::StoreError> for PageError {
    fn from(err: crate::store::StoreError) -> Self {
        Self::Service(err.into())
    }
}

impl From<Error> for PageError {
    fn from(err: Error) -> Self {
        Self::Service(err)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message, refusal) = match self {
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form was sent without a valid security token, or from another site. Go back, reload the page and try again. Signing in needs cookies: if your browser blocks them, allow them for this site.".to_string(),
                None,
            ),
            Self::Service(err) => {
                let status = err.status();
                if let Error::Internal(cause) = &err {
                    tracing::error!(error = ?cause, "internal error");
                }
                let title = match status {
                    StatusCode::NOT_FOUND => "Page not found",
                    StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
                    StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
                    s if s.is_client_error() => "That did not work",
                    _ => "Something went wrong",
                };
                let message = match status {
                    _ if matches!(err, Error::Overloaded) => "The service is very busy right now. Please try again in a moment.".into(),
                    StatusCode::SERVICE_UNAVAILABLE => "The service cannot reach its database right now. Please try again in a moment.".into(),
                    s if s.is_server_error() => "An unexpected error occurred. It has been logged.".into(),
                    _ => err.detail(),
                };
                (status, title, message, Some(err))
            }
        };
        let page = ErrorPage {
            nav: templates::Nav::anonymous(),
            title,
            message: &message,
        };
        let response = render(status, &page);
        match refusal {
            Some(err) => err.add_retry_after(response),
            None => response,
        }
    }
}

/// Whether a client prefers an HTML page to JSON (a browser navigating).
pub fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}
