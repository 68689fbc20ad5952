//! Extractors that turn requests into validated values, with FastAPI-shaped errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use utoipa::PartialSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::AppState;
use super::pages::PageError;
use crate::auth::sessions::keep_alive;
use crate::domain::Username;
use crate::error::{AuthFailure, Error, FieldError};
use crate::store::User;

/// A JSON body. Malformed JSON, a body of another content type, missing fields or wrong
/// types become a 422 in FastAPI's shape (every missing field at once), never a 500. As in
/// FastAPI, a body without a `Content-Type` is read as JSON, unless a browser says it comes
/// from another site.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + PartialSchema, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers();
        let is_json = match headers.get(header::CONTENT_TYPE) {
            Some(value) => {
                let value = value.to_str().unwrap_or_default();
                let mime = value.split(';').next().unwrap_or_default().trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            }
            // Not from a page of another site: a browser sends such a body there without
            // asking (a "simple" request), so other sites' pages could spend their visitors'
            // addresses on sign-ups and reset mail. Scripts and curl send no Sec-Fetch-Site.
            None => !matches!(
                headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
                Some("cross-site" | "same-site")
            ),
        };
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            let missing = FieldError::whole_body("Field required", "missing");
            return Err(Error::Validation(vec![missing]));
        }
        let not_an_object = || {
            let msg = "Input should be a valid dictionary or object to extract fields from";
            Error::Validation(vec![FieldError::whole_body(msg, "model_attributes_type")])
        };
        // FastAPI hands a body of another type to validation as bytes, which no model takes.
        if !is_json {
            return Err(not_an_object());
        }
        // serde would read a struct from an array too (`["a", "b"]`); bodies are objects.
        let value: serde_json::Value = parse_json(&bytes)?;
        if !value.is_object() {
            return Err(not_an_object());
        }
        match deserialize_located(&value) {
            // serde stops at the first missing field: the schema names them all, built only
            // then, not for every body.
            Err(Error::Validation(errors)) if errors.iter().any(|e| e.kind == "missing") => {
                let missing = missing_fields::<T>(&value);
                Err(Error::Validation(if missing.is_empty() {
                    errors
                } else {
                    missing
                }))
            }
            parsed => parsed.map(ApiJson),
        }
    }
}

/// The fields `T`'s schema requires that `body` lacks, each as FastAPI reports it, so that a
/// client sending `{}` learns of them all at once.
fn missing_fields<T: PartialSchema>(body: &serde_json::Value) -> Vec<FieldError> {
    let RefOr::T(Schema::Object(object)) = T::schema() else {
        return Vec::new();
    };
    object
        .required
        .iter()
        .filter(|name| body.get(name.as_str()).is_none())
        .map(|name| FieldError::missing(name))
        .collect()
}

/// Reads the whole body, mapping the size limit to 413.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Error> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge
        } else {
            Error::BadRequest("Could not read the request body".into())
        }
    })
}

/// Parses JSON into `T`, reporting where it failed as FastAPI does.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = deserialize_located(&mut deserializer)?;
    deserializer
        .end()
        .map_err(|err| Error::Validation(vec![json_field_error(&err, Vec::new())]))?;
    Ok(value)
}

/// Converts already-parsed JSON (for example form fields) into `T`, with the same errors.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    deserialize_located(value)
}

fn deserialize_located<'de, T, D>(deserializer: D) -> Result<T, Error>
where
    T: DeserializeOwned,
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path: Vec<String> = err
            .path()
            .iter()
            .map(|segment| segment.to_string())
            .filter(|s| s != "?")
            .collect();
        Error::Validation(vec![json_field_error(err.inner(), path)])
    })
}

fn json_field_error(err: &serde_json::Error, mut path: Vec<String>) -> FieldError {
    use serde_json::error::Category;
    let message = err.to_string();
    let (msg, kind) = match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            return FieldError {
                loc: vec!["body".into(), err.column().to_string()],
                msg: "JSON decode error".into(),
                kind: "json_invalid".into(),
            };
        }
        Category::Data => {
            // serde reports a missing field at its parent, naming the field in the message.
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                path.push(field.to_string());
                ("Field required".to_string(), "missing")
            } else {
                (strip_position(&message), "type_error")
            }
        }
    };
    let mut loc = vec!["body".to_string()];
    loc.extend(path);
    FieldError {
        loc,
        msg,
        kind: kind.into(),
    }
}

/// serde_json appends " at line 1 column 12"; the location is already in `loc`.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Path parameters (`ApiPath`) and query parameters (`ApiQuery`) as axum reads them, with its
/// rejections answered like any other invalid value: a 422 naming the part of the address,
/// instead of axum's plain-text 400. Such a rejection is a segment that is not UTF-8 once
/// decoded (`/notes/%FF`), or a query that does not fit the fields (one given twice).
/// Pages take `PagePath` and `PageQuery`, whose refusal is a page.
macro_rules! url_extractor {
    ($name:ident, $axum:ident, $place:literal, $rejection:ty) => {
        pub struct $name<T>(pub T);

        impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for $name<T> {
            type Rejection = $rejection;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                match axum::extract::$axum::<T>::from_request_parts(parts, state).await {
                    Ok(axum::extract::$axum(value)) => Ok(Self(value)),
                    Err(rejection) => Err(invalid_address($place, rejection.body_text()).into()),
                }
            }
        }
    };
}

url_extractor!(ApiPath, Path, "path", Error);
url_extractor!(ApiQuery, Query, "query", Error);
url_extractor!(PagePath, Path, "path", PageError);
url_extractor!(PageQuery, Query, "query", PageError);

fn invalid_address(place: &str, msg: String) -> Error {
    Error::Validation(vec![FieldError {
        loc: vec![place.into()],
        msg,
        kind: "value_error".into(),
    }])
}

/// A numeric id from the path; anything else is a 422 naming the path parameter.
pub fn path_id(raw: &str) -> Result<i64, Error> {
    raw.parse().map_err(|_| {
        Error::Validation(vec![FieldError {
            loc: vec!["path".into(), "id".into()],
            msg: "Input should be a valid integer".into(),
            kind: "int_parsing".into(),
        }])
    })
}

/// The signed-in, active user of a bearer-token request.
pub struct AuthUser(pub User);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let BearerSession { user, .. } = BearerSession::from_request_parts(parts, state).await?;
        Ok(Self(user))
    }
}

/// The signed-in, active superuser of a bearer-token request; anyone else signed in gets a
/// 403 `{"detail": "Not enough permissions"}`.
pub struct AdminUser(pub User);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        if !user.is_superuser {
            return Err(Error::Forbidden("Not enough permissions".into()));
        }
        Ok(Self(user))
    }
}

/// The caller of a bearer-token request, with the session its token belongs to (`None` for
/// tokens minted by the tutorial's backend, which name no session).
pub struct BearerSession {
    pub user: User,
    pub session_id: Option<i64>,
}

impl FromRequestParts<AppState> for BearerSession {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let invalid = || Error::Unauthorized(AuthFailure::Invalid);
        let token =
            bearer_token(&parts.headers).ok_or(Error::Unauthorized(AuthFailure::Missing))?;
        let now = state.clock.now();
        let claims = state.tokens.verify(token, now).ok_or_else(invalid)?;
        let (user, session_id) = match claims.sid {
            // The session must still exist: a logout or revocation takes effect here, at once.
            Some(sid) => {
                let (session, user) = state
                    .store
                    .session_with_user(sid, now)
                    .await?
                    .ok_or_else(invalid)?;
                if Username::fold(&user.username) != Username::fold(&claims.sub) {
                    return Err(invalid());
                }
                keep_alive(state.store.as_ref(), &state.config.sessions, now, &session).await?;
                (user, Some(sid))
            }
            None => {
                let user = state
                    .store
                    .user_by_key(&Username::fold(&claims.sub))
                    .await?;
                (user.ok_or_else(invalid)?, None)
            }
        };
        if user.disabled {
            return Err(Error::InactiveUser);
        }
        Ok(Self { user, session_id })
    }
}

/// The token of an `Authorization: Bearer ...` header (scheme case-insensitive, as in RFC 6750).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        username: String,
        completed: Option<bool>,
    }

    fn loc(err: Error) -> (Vec<String>, String) {
        match err {
            Error::Validation(errors) => (errors[0].loc.clone(), errors[0].kind.clone()),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn missing_field_is_located() {
        let err = parse_json::<Body>(b"{}").unwrap_err();
        assert_eq!(
            loc(err),
            (vec!["body".into(), "username".into()], "missing".into())
        );
    }

    #[test]
    fn wrong_type_is_located() {
        let err = parse_json::<Body>(br#"{"username": 5}"#).unwrap_err();
        assert_eq!(loc(err).0, vec!["body".to_string(), "username".to_string()]);
    }

    #[test]
    fn malformed_json_is_json_invalid() {
        for raw in [
            &b"{"[..],
            b"not json",
            b"",
            b"{\"username\": \"a\"} trailing",
        ] {
            let err = parse_json::<Body>(raw).unwrap_err();
            assert_eq!(
                loc(err).1,
                "json_invalid",
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
