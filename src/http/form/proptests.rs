//! Property tests: no form body, however malformed, panics the parser or becomes a 5xx.

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, header};
use proptest::prelude::*;
use serde::Deserialize;

use super::{AnyForm, parse_fields};
use crate::error::Error;

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Login {
    username: String,
    password: String,
    #[serde(default)]
    grant_type: Option<String>,
}

/// Runs the real extractor on a body with the given content type.
fn extract(content_type: &str, body: Vec<u8>) -> Result<AnyForm<Login>, Error> {
    let request = Request::builder()
        .method("POST")
        .uri("/token")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(AnyForm::<Login>::from_request(request, &()))
}

fn assert_client_error(outcome: Result<AnyForm<Login>, Error>) {
    if let Err(error) = outcome {
        assert!(error.status().is_client_error(), "{error:?}");
    }
}

proptest! {
    #[test]
    fn any_fields_parse_or_fail_with_a_422(
        fields in proptest::collection::vec((".{0,12}", ".{0,24}"), 0..8)
    ) {
        match parse_fields::<Login>(fields.clone()) {
            Ok(login) => {
                // The last value of a repeated field wins.
                let last = |name: &str| fields.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                prop_assert_eq!(Some(login.username), last("username"));
                prop_assert_eq!(Some(login.password), last("password"));
            }
            Err(Error::Validation(errors)) => prop_assert!(!errors.is_empty()),
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    #[test]
    fn any_urlencoded_body_is_a_form_or_a_4xx(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        assert_client_error(extract("application/x-www-form-urlencoded", body));
    }

    #[test]
    fn urlencoded_pairs_round_trip(username in ".{0,40}", password in ".{0,40}", extra in ".{0,20}") {
        let body = serde_urlencoded::to_string([
            ("grant_type", "password"),
            ("username", username.as_str()),
            ("password", password.as_str()),
            ("client_id", extra.as_str()),
        ])
        .unwrap();
        let AnyForm(login) = extract("application/x-www-form-urlencoded", body.into_bytes()).unwrap();
        prop_assert_eq!(login.username, username);
        prop_assert_eq!(login.password, password);
    }

    #[test]
    fn any_multipart_body_is_a_form_or_a_4xx(
        boundary in "[a-zA-Z0-9'()+_,./:=?-]{1,70}",
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        assert_client_error(extract(&format!("multipart/form-data; boundary={boundary}"), body));
    }

    #[test]
    fn any_content_type_is_handled(content_type in "[ -~]{0,60}", body in ".{0,64}") {
        assert_client_error(extract(&content_type, body.into_bytes()));
    }
}
