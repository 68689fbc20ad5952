//! Error responses shared by many operations, for `#[utoipa::path(responses(...))]`.
//!
//! Each is the JSON body `src/error.rs` writes for that status, so a client generated from the
//! document knows every answer it can get.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Ref, Type};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, RefOr};

fn json_response(description: &str, schema: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build(),
    )
}

fn detail(description: &str) -> ResponseBuilder {
    json_response(description, "HTTPError")
}

fn header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

fn map(entries: Vec<(&str, ResponseBuilder)>) -> BTreeMap<String, RefOr<Response>> {
    entries
        .into_iter()
        .map(|(status, response)| (status.to_string(), RefOr::T(response.build())))
        .collect()
}

/// A bearer-token operation: 401 without a valid token, 400 for a disabled account, and 503
/// when the database cannot be reached to find the user.
pub struct BearerErrors;

impl IntoResponses for BearerErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(vec![
            (
                "401",
                detail("Not authenticated, or the token is not valid").header(
                    "WWW-Authenticate",
                    header("`Bearer`: send `Authorization: Bearer <token>`"),
                ),
            ),
            ("400", detail("Inactive user")),
            ("503", unavailable()),
        ])
    }
}

/// An operation with a request body: too large, or missing, malformed, of another media type,
/// or with fields breaking a rule.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(vec![
            ("413", detail("Request body too large (64 KiB at most)")),
            (
                "422",
                json_response(
                    "A field is missing or breaks a rule, or the body is missing, malformed or \
                     not of the operation's media type",
                    "HTTPValidationError",
                ),
            ),
        ])
    }
}

/// An operation with a per-address rate limit (`src/http/rate_limit.rs`): 429 with the
/// seconds to wait.
pub struct RateLimited;

impl IntoResponses for RateLimited {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(vec![(
            "429",
            detail("Too many requests from this address")
                .header("Retry-After", header("Seconds to wait before retrying")),
        )])
    }
}

/// An operation that checks the account's current password: wrong passwords count against
/// the account like failed logins (`src/auth/throttle.rs`).
pub struct PasswordGuesses;

impl IntoResponses for PasswordGuesses {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(vec![(
            "429",
            detail(
                "Too many wrong passwords for this account lately, or too many checks of it at once",
            )
            .header(
                "Retry-After",
                header("Seconds to wait"),
            ),
        )])
    }
}

/// Any operation that needs the database.
pub struct Unavailable;

impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(vec![("503", unavailable())])
    }
}

fn unavailable() -> ResponseBuilder {
    detail("The database is unavailable, or every password-hashing slot is busy; retry later")
        .header("Retry-After", header("Seconds to wait before retrying"))
}
