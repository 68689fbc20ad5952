//! `AnyForm<T>`: an HTML form body, sent either as `application/x-www-form-urlencoded` or as
//! `multipart/form-data` (what the tutorial's login page sends with `FormData`).

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::extract::{parse_value, read_body};
use crate::error::Error;

pub struct AnyForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AnyForm<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let fields = match media_type(req.headers()).as_str() {
            "application/x-www-form-urlencoded" => {
                let body = read_body(req, state).await?;
                serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).map_err(|_| {
                    Error::BadRequest("The form body is not valid URL encoding".into())
                })?
            }
            "multipart/form-data" => multipart_fields(req, state).await?,
            // As FastAPI's form reader does: a body of any other type (JSON, say) holds no
            // form fields, so the required ones are reported missing (a 422).
            _ => Vec::new(),
        };
        parse_fields(fields).map(AnyForm)
    }
}

/// The body's media type, lowercase, without parameters; empty without a `Content-Type`.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether the body is a form, of either kind `AnyForm` reads.
pub fn is_form(headers: &HeaderMap) -> bool {
    matches!(
        media_type(headers).as_str(),
        "application/x-www-form-urlencoded" | "multipart/form-data"
    )
}

async fn multipart_fields<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<Vec<(String, String)>, Error> {
    let invalid = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge
        } else {
            Error::BadRequest("The multipart form body is not valid".into())
        }
    };
    let mut multipart = Multipart::from_request(req, state)
        .await
        .map_err(|_| Error::BadRequest("The multipart form body is not valid".into()))?;
    let mut fields = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(invalid)? {
        let Some(name) = field.name().map(str::to_string) else {
            continue;
        };
        // Files are not part of any form here; skip them rather than buffer them.
        if field.file_name().is_some() {
            continue;
        }
        fields.push((name, field.text().await.map_err(invalid)?));
    }
    Ok(fields)
}

/// Turns form fields into `T` (the last value of a repeated field wins), with the same
/// 422 shape as JSON bodies.
fn parse_fields<T: DeserializeOwned>(fields: Vec<(String, String)>) -> Result<T, Error> {
    let map: Map<String, Value> = fields
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    parse_value(Value::Object(map))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Login {
        username: String,
        password: String,
    }

    #[test]
    fn fields_become_a_struct() {
        let login: Login = parse_fields(vec![
            ("username".into(), "foo".into()),
            ("password".into(), "secret".into()),
            ("scope".into(), "".into()),
        ])
        .unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("foo", "secret")
        );
    }

    #[test]
    fn a_missing_field_is_a_422_naming_it() {
        match parse_fields::<Login>(vec![("username".into(), "foo".into())]) {
            Err(Error::Validation(errors)) => assert_eq!(errors[0].loc, ["body", "password"]),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }
}
