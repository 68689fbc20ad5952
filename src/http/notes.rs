//! The notes resource of the tutorial's boilerplate, scoped to the signed-in owner:
//! another user's note is a 404, never a 403, so ids reveal nothing.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{ApiJson, AppState, AuthUser};
use crate::domain::NoteText;
use crate::error::{Error, FieldError, Result};
use crate::store::{Note, NotePatch};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/notes/", get(list_notes).post(create_note))
        .route(
            "/notes/{id}",
            get(read_note).patch(update_note).delete(delete_note),
        )
}

#[derive(Debug, Deserialize)]
struct NoteIn {
    text: String,
    #[serde(default)]
    completed: bool,
}

#[derive(Debug, Deserialize)]
struct NoteUpdate {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    completed: Option<bool>,
}

#[derive(Debug, Serialize)]
struct NoteOut {
    id: i64,
    text: String,
    completed: bool,
}

impl From<Note> for NoteOut {
    fn from(note: Note) -> Self {
        Self {
            id: note.id,
            text: note.text,
            completed: note.completed,
        }
    }
}

fn note_text(raw: String) -> Result<NoteText> {
    NoteText::parse(raw).map_err(|msg| Error::validation("text", msg))
}

/// Note ids are integers; anything else is a 422 naming the path parameter.
fn note_id(raw: &str) -> Result<i64> {
    raw.parse().map_err(|_| {
        Error::Validation(vec![FieldError {
            loc: vec!["path".into(), "id".into()],
            msg: "Input should be a valid integer".into(),
            kind: "int_parsing".into(),
        }])
    })
}

async fn list_notes(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<NoteOut>>> {
    let notes = state.store.list_notes(user.id).await?;
    Ok(Json(notes.into_iter().map(NoteOut::from).collect()))
}

async fn create_note(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiJson(input): ApiJson<NoteIn>,
) -> Result<Json<NoteOut>> {
    let text = note_text(input.text)?;
    let note = state
        .store
        .create_note(user.id, &text, input.completed, Utc::now())
        .await?;
    Ok(Json(note.into()))
}

async fn read_note(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<NoteOut>> {
    let note = state.store.note(user.id, note_id(&id)?).await?;
    note.map(|n| Json(n.into())).ok_or(Error::NotFound)
}

async fn update_note(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<NoteUpdate>,
) -> Result<Json<NoteOut>> {
    let patch = NotePatch {
        text: input.text.map(note_text).transpose()?,
        completed: input.completed,
    };
    let note = state
        .store
        .update_note(user.id, note_id(&id)?, patch)
        .await?;
    note.map(|n| Json(n.into())).ok_or(Error::NotFound)
}

async fn delete_note(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if state.store.delete_note(user.id, note_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound)
    }
}
