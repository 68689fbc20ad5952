//! The landing page, the account page and the admin page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::templates::{AccountPage, AdminPage, LandingPage, Nav};
use super::{PageContext, SignedInPage, render};

pub async fn landing(ctx: PageContext) -> Response {
    let page = LandingPage {
        nav: Nav::from_context(&ctx),
    };
    (ctx.jar, render(StatusCode::OK, &page)).into_response()
}

pub async fn account(SignedInPage { ctx, signed_in }: SignedInPage) -> Response {
    let page = AccountPage {
        nav: Nav::from_context(&ctx),
        user: &signed_in.user,
        member_since: signed_in.user.created_at.format("%-d %B %Y").to_string(),
        session_started: signed_in
            .session
            .created_at
            .format("%-d %B %Y, %H:%M UTC")
            .to_string(),
        remembered: signed_in.session.persistent,
    };
    (ctx.jar, render(StatusCode::OK, &page)).into_response()
}

/// As in the tutorial: the signed-in user's name. The console for superusers grows here.
pub async fn admin(SignedInPage { ctx, signed_in }: SignedInPage) -> Response {
    let page = AdminPage {
        nav: Nav::from_context(&ctx),
        username: &signed_in.user.username,
    };
    (ctx.jar, render(StatusCode::OK, &page)).into_response()
}
