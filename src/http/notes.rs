//! The notes resource of the tutorial's boilerplate, scoped to the signed-in owner:
//! another user's note is a 404, never a 403, so ids reveal nothing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::doc_responses::{BearerErrors, BodyErrors};
use super::docs::{ErrorBody, ValidationErrorBody};
use super::extract::{ApiPath, path_id};
use super::{ApiJson, AppState, AuthUser};
use crate::domain::NoteText;
use crate::error::{Error, Result};
use crate::store::{Note, NotePatch};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notes, create_note))
        .routes(routes!(read_note, update_note, delete_note))
}

#[derive(Debug, Deserialize, ToSchema)]
struct NoteIn {
    /// Not blank, at most 10,000 characters.
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    text: String,
    #[serde(default)]
    completed: bool,
}

/// A partial update: absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
struct NoteUpdate {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    text: Option<String>,
    #[serde(default)]
    completed: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
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

/// The signed-in user's notes, oldest first.
#[utoipa::path(
    get,
    path = "/notes/",
    tag = "notes",
    security(("OAuth2PasswordBearer" = [])),
    responses(
        (status = 200, description = "The notes", body = Vec<NoteOut>),
        BearerErrors,
    )
)]
async fn list_notes(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<NoteOut>>> {
    let notes = state.store.list_notes(user.id).await?;
    Ok(Json(notes.into_iter().map(NoteOut::from).collect()))
}

/// Creates a note.
#[utoipa::path(
    post,
    path = "/notes/",
    tag = "notes",
    security(("OAuth2PasswordBearer" = [])),
    request_body = NoteIn,
    responses(
        (status = 200, description = "The new note", body = NoteOut),
        BearerErrors,
        BodyErrors,
    )
)]
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

/// One of the signed-in user's notes.
#[utoipa::path(
    get,
    path = "/notes/{id}",
    tag = "notes",
    security(("OAuth2PasswordBearer" = [])),
    params(("id" = i64, Path, description = "The note's id")),
    responses(
        (status = 200, description = "The note", body = NoteOut),
        (status = 404, description = "No such note of yours", body = ErrorBody),
        (status = 422, description = "The id is not an integer", body = ValidationErrorBody),
        BearerErrors,
    )
)]
async fn read_note(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<NoteOut>> {
    let note = state.store.note(user.id, path_id(&id)?).await?;
    note.map(|n| Json(n.into())).ok_or(Error::NotFound)
}

/// Changes the text or the completion of a note.
#[utoipa::path(
    patch,
    path = "/notes/{id}",
    tag = "notes",
    security(("OAuth2PasswordBearer" = [])),
    params(("id" = i64, Path, description = "The note's id")),
    request_body = NoteUpdate,
    responses(
        (status = 200, description = "The updated note", body = NoteOut),
        (status = 404, description = "No such note of yours", body = ErrorBody),
        BearerErrors,
        BodyErrors,
    )
)]
async fn update_note(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<NoteUpdate>,
) -> Result<Json<NoteOut>> {
    let patch = NotePatch {
        text: input.text.map(note_text).transpose()?,
        completed: input.completed,
    };
    let note = state
        .store
        .update_note(user.id, path_id(&id)?, patch)
        .await?;
    note.map(|n| Json(n.into())).ok_or(Error::NotFound)
}

/// Deletes a note.
#[utoipa::path(
    delete,
    path = "/notes/{id}",
    tag = "notes",
    security(("OAuth2PasswordBearer" = [])),
    params(("id" = i64, Path, description = "The note's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such note of yours", body = ErrorBody),
        (status = 422, description = "The id is not an integer", body = ValidationErrorBody),
        BearerErrors,
    )
)]
async fn delete_note(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    if state.store.delete_note(user.id, path_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound)
    }
}
