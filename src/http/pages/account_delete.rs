//! `POST /account/delete`: users delete their own account, confirming with their password.
//! Notes, sessions and tokens go with it; the audit trail keeps its rows, without the user.
//! Not an administrator's: another administrator or `gatehouse user delete` removes theirs.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{CsrfForm, PageError, SignedInPage};
use crate::auth::login::confirm_current_password;
use crate::error::Error;
use crate::http::AppState;
use crate::http::session::end_session;
use crate::store::NewEvent;

#[derive(Debug, Deserialize)]
pub struct DeleteFields {
    #[serde(default)]
    password: String,
}

pub async fn delete_account(
    State(state): State<AppState>,
    SignedInPage { ctx, signed_in }: SignedInPage,
    CsrfForm(fields): CsrfForm<DeleteFields>,
) -> Result<Response, PageError> {
    let user = &signed_in.user;
    // As in the console: an administrator does not remove their own rights, so the last one
    // cannot lock everyone out by mistake.
    if user.is_superuser {
        return Ok(Redirect::to("/account?notice=delete-superuser").into_response());
    }
    let store = state.store.as_ref();
    let check = state.password_check();
    let now = state.clock.now();
    match confirm_current_password(store, check, user, fields.password, now).await {
        Ok(_) => {}
        Err(Error::BadRequest(_)) => {
            return Ok(Redirect::to("/account?notice=delete-refused").into_response());
        }
        Err(Error::TooManyRequests { .. }) => {
            return Ok(Redirect::to("/account?notice=delete-slowed").into_response());
        }
        Err(other) => return Err(other.into()),
    }
    let jar = end_session(&state, ctx.jar).await?;
    state.store.delete_user(user.id).await?;
    // Recorded after the deletion, so without a user: the detail says who it was.
    let event = NewEvent {
        kind: "account_deleted",
        user_id: None,
        actor_id: None,
        ip: None,
        user_agent: None,
        detail: Some(format!(
            "user {} (id {}) deleted their account",
            user.username, user.id
        )),
        created_at: now,
    };
    if let Err(err) = state.store.record_event(event).await {
        tracing::warn!(error = %err, "audit event not recorded");
    }
    tracing::info!(user_id = user.id, "user deleted their account");
    Ok((jar, Redirect::to("/login?notice=account-deleted")).into_response())
}
