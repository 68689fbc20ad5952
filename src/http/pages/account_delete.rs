//! `POST /account/delete`: users delete their own account, confirming with their password.
//! Notes, sessions and tokens go with it; the audit trail keeps its rows, without the user.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{CsrfForm, PageError, SignedInPage};
use crate::auth::Verification;
use crate::domain::{Password, Username};
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
    let credentials = state
        .store
        .credentials_by_key(&Username::fold(&user.username))
        .await?;
    let stored = credentials.as_ref().map(|c| c.hashed_password.as_str());
    let confirmed = match Password::attempt(fields.password) {
        Some(attempt) => {
            state
                .hasher
                .verify(&attempt, stored)
                .await
                .map_err(Error::from)?
                != Verification::Mismatch
                && stored.is_some()
        }
        None => false,
    };
    if !confirmed {
        return Ok(Redirect::to("/account?notice=delete-refused").into_response());
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
        created_at: state.clock.now(),
    };
    if let Err(err) = state.store.record_event(event).await {
        tracing::warn!(error = %err, "audit event not recorded");
    }
    tracing::info!(user_id = user.id, "user deleted their account");
    Ok((jar, Redirect::to("/login?notice=account-deleted")).into_response())
}
