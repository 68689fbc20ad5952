//! The notes page: list, add, mark complete, delete. Only the owner's notes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

use super::templates::{Nav, NotesPage};
use super::{CsrfForm, NoFields, PageError, SignedInPage, render};
use crate::domain::NoteText;
use crate::error::Error;
use crate::http::AppState;
use crate::http::extract::PagePath;
use crate::store::NotePatch;

const NOTES: &str = "/notes";

pub async fn show_notes(
    State(state): State<AppState>,
    SignedInPage { ctx, signed_in }: SignedInPage,
) -> Result<Response, PageError> {
    let notes = state.store.list_notes(signed_in.user.id).await?;
    let page = NotesPage {
        nav: Nav::from_context(&ctx),
        notes,
        draft: String::new(),
        error: None,
    };
    Ok((ctx.jar, render(StatusCode::OK, &page)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct NewNote {
    #[serde(default)]
    text: String,
}

pub async fn add_note(
    State(state): State<AppState>,
    SignedInPage { ctx, signed_in }: SignedInPage,
    CsrfForm(form): CsrfForm<NewNote>,
) -> Result<Response, PageError> {
    let user_id = signed_in.user.id;
    match NoteText::parse(form.text.clone()) {
        Ok(text) => {
            state
                .store
                .create_note(user_id, &text, false, Utc::now())
                .await?;
            Ok(Redirect::to(NOTES).into_response())
        }
        Err(message) => {
            let notes = state.store.list_notes(user_id).await?;
            let page = NotesPage {
                nav: Nav::from_context(&ctx),
                notes,
                draft: form.text,
                error: Some(message),
            };
            Ok((ctx.jar, render(StatusCode::UNPROCESSABLE_ENTITY, &page)).into_response())
        }
    }
}

/// Note ids in page URLs: anything but an integer is simply not found.
fn parse_id(raw: &str) -> Result<i64, PageError> {
    raw.parse().map_err(|_| PageError::Service(Error::NotFound))
}

/// The state a note's button asks for. Sending it, not "flip", makes a double click or a
/// resubmitted form harmless; a form from before this field flips the note.
#[derive(Debug, Deserialize)]
pub struct Toggle {
    completed: Option<String>,
}

pub async fn toggle_note(
    State(state): State<AppState>,
    SignedInPage { signed_in, .. }: SignedInPage,
    PagePath(id): PagePath<String>,
    CsrfForm(form): CsrfForm<Toggle>,
) -> Result<Response, PageError> {
    let (owner, id) = (signed_in.user.id, parse_id(&id)?);
    let completed = match form.completed.as_deref() {
        Some("true") => true,
        Some("false") => false,
        Some(_) => {
            let message = "completed must be true or false";
            return Err(Error::BadRequest(message.into()).into());
        }
        None => {
            let note = state.store.note(owner, id).await?.ok_or(Error::NotFound)?;
            !note.completed
        }
    };
    let patch = NotePatch {
        text: None,
        completed: Some(completed),
    };
    state
        .store
        .update_note(owner, id, patch)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(Redirect::to(NOTES).into_response())
}

pub async fn delete_note(
    State(state): State<AppState>,
    SignedInPage { signed_in, .. }: SignedInPage,
    PagePath(id): PagePath<String>,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    if !state
        .store
        .delete_note(signed_in.user.id, parse_id(&id)?)
        .await?
    {
        return Err(Error::NotFound.into());
    }
    Ok(Redirect::to(NOTES).into_response())
}
