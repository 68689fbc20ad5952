//! One error type for the whole service, and the JSON contract it maps to.
//!
//! The bodies follow FastAPI's: `{"detail": "..."}` for ordinary errors and
//! `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}` for validation errors, so
//! clients written against the tutorial's backend keep working.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::store::StoreError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One entry of a 422 body, in FastAPI's shape.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = ValidationError)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    /// A field of the request body that failed a rule.
    pub fn body(field: &str, msg: impl Into<String>, kind: &str) -> Self {
        Self {
            loc: vec!["body".into(), field.into()],
            msg: msg.into(),
            kind: kind.into(),
        }
    }

    /// A required field of the request body that is not there, as FastAPI words it.
    pub fn missing(field: &str) -> Self {
        Self::body(field, "Field required", "missing")
    }

    /// The request body as a whole (missing, or not an object).
    pub fn whole_body(msg: &str, kind: &str) -> Self {
        Self {
            loc: vec!["body".into()],
            msg: msg.into(),
            kind: kind.into(),
        }
    }
}

/// Why a bearer credential was refused; the two cases have different messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header, or not the Bearer scheme.
    Missing,
    /// A token was given but is not valid (bad signature, expired, unknown user, ...).
    Invalid,
    /// Username or password wrong at login.
    BadCredentials,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("authentication failed: {0:?}")]
    Unauthorized(AuthFailure),
    #[error("inactive user")]
    InactiveUser,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("service unavailable")]
    Unavailable,
    /// A rate limit or the login slow-down refused the request (429, with `Retry-After` when
    /// waiting helps).
    #[error("too many requests: {detail}")]
    TooManyRequests {
        detail: String,
        retry_after: Option<u64>,
    },
    /// Every password-hashing slot stayed busy for longer than a request may wait (503).
    #[error("overloaded")]
    Overloaded,
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Error {
    /// Internal, unless the cause is a full hashing queue, which is a 503 the client can retry.
    fn from(err: anyhow::Error) -> Self {
        if err.is::<crate::auth::HasherBusy>() {
            Self::Overloaded
        } else {
            Self::Internal(err)
        }
    }
}

impl Error {
    pub fn validation(field: &str, msg: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::body(field, msg, "value_error")])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::InactiveUser | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before trying again, when waiting helps: what a rate limit
    /// computed, a moment for the hashing queue to drain, longer for the database to return.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::TooManyRequests { retry_after, .. } => *retry_after,
            Self::Overloaded => Some(2),
            Self::Unavailable => Some(5),
            _ => None,
        }
    }

    /// `response`, which answers this error (as JSON or as a page), with its `Retry-After`.
    pub fn add_retry_after(&self, mut response: Response) -> Response {
        if let Some(seconds) = self.retry_after() {
            let value = HeaderValue::from(seconds);
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }

    /// The human-readable message a client (or a page) shows.
    pub fn detail(&self) -> String {
        match self {
            Self::Validation(errors) => errors
                .first()
                .map(|e| e.msg.clone())
                .unwrap_or_else(|| "Invalid input".into()),
            Self::Unauthorized(AuthFailure::Missing) => "Not authenticated".into(),
            Self::Unauthorized(AuthFailure::Invalid) => "Could not validate credentials".into(),
            Self::Unauthorized(AuthFailure::BadCredentials) => {
                "Incorrect username or password".into()
            }
            Self::InactiveUser => "Inactive user".into(),
            Self::BadRequest(m) | Self::Conflict(m) | Self::Forbidden(m) => m.clone(),
            Self::NotFound => "Not Found".into(),
            Self::MethodNotAllowed => "Method Not Allowed".into(),
            Self::PayloadTooLarge => "Request body too large".into(),
            Self::Unavailable => "Service unavailable".into(),
            Self::TooManyRequests { detail, .. } => detail.clone(),
            Self::Overloaded => "Too many logins in progress; try again in a moment".into(),
            Self::Internal(_) => "Internal server error".into(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                Self::Unavailable
            }
            StoreError::Contended(cause) => {
                tracing::warn!(%cause, "database contention; the client may retry");
                Self::Unavailable
            }
            StoreError::Conflict(what) => Self::Conflict(what),
            StoreError::NotFound => Self::NotFound,
            StoreError::NulInText => {
                Self::BadRequest("Text must not contain the NUL character".into())
            }
            StoreError::Other(cause) => Self::Internal(cause),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::Validation(errors) => json!({ "detail": errors }),
            Self::Internal(cause) => {
                // Logged once here, with its chain; the client gets an opaque message.
                tracing::error!(error = ?cause, "internal error");
                json!({ "detail": self.detail() })
            }
            _ => json!({ "detail": self.detail() }),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::Unauthorized(_) = self {
            let bearer = HeaderValue::from_static("Bearer");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, bearer);
        }
        self.add_retry_after(response)
    }
}
