//! What every page needs (the signed-in user and a CSRF token for its forms), and the
//! checks every form submission passes: same origin and a valid CSRF token.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::PageError;
use crate::auth::session::{csrf_matches, csrf_token, new_token};
use crate::http::AppState;
use crate::http::extract::parse_value;
use crate::http::form::AnyForm;
use crate::http::session::{
    MaybeSignedIn, SignedIn, csrf_cookie_name, secure_cookie, session_cookie_name,
};

/// The secret a client's CSRF tokens derive from: its session cookie once signed in, a
/// random pre-session cookie before (so the login and sign-up forms are protected too).
fn csrf_seed(jar: &CookieJar, state: &AppState) -> Option<String> {
    let config = &state.config;
    jar.get(session_cookie_name(config))
        .or_else(|| jar.get(csrf_cookie_name(config)))
        .map(|c| c.value().to_string())
}

/// The context of a page render: who is signed in, the token for its forms, and the
/// cookies to send back (a new pre-session CSRF cookie when the client had none).
pub struct PageContext {
    pub user: Option<SignedIn>,
    pub csrf_token: String,
    pub jar: CookieJar,
}

impl FromRequestParts<AppState> for PageContext {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let MaybeSignedIn(user) = MaybeSignedIn::from_request_parts(parts, state).await?;
        let mut jar = CookieJar::from_headers(&parts.headers);
        let seed = match csrf_seed(&jar, state) {
            Some(seed) => seed,
            None => {
                let (seed, _) = new_token();
                let name = csrf_cookie_name(&state.config);
                jar = jar.add(secure_cookie(&state.config, name, seed.clone(), None));
                seed
            }
        };
        let csrf_token = csrf_token(&state.config.secret_key, &seed);
        Ok(Self {
            user,
            csrf_token,
            jar,
        })
    }
}

/// A page for signed-in users only; anyone else is sent to the login page, with the way
/// back for a page they were trying to open.
pub struct SignedInPage {
    pub ctx: PageContext,
    pub signed_in: SignedIn,
}

impl FromRequestParts<AppState> for SignedInPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let mut ctx = PageContext::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match ctx.user.take() {
            Some(signed_in) => {
                ctx.user = Some(signed_in.clone());
                Ok(Self { ctx, signed_in })
            }
            None if parts.method == Method::GET => {
                let back = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let encoded: String =
                    url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
                Err(Redirect::to(&format!("/login?next={encoded}")).into_response())
            }
            None => Err(Redirect::to("/login?notice=signed-in-required").into_response()),
        }
    }
}

/// A form with no fields but the CSRF token (log out, delete, toggle).
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}

/// A form submission that passed the origin and CSRF checks; anything else is a 403 page.
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let (parts, body) = req.into_parts();
        if !same_origin(&parts, state) {
            return Err(PageError::Forbidden);
        }
        let seed = csrf_seed(&CookieJar::from_headers(&parts.headers), state)
            .ok_or(PageError::Forbidden)?;
        // Our pages post forms; anything else was not sent by them, but says so plainly
        // rather than as a missing CSRF token.
        if !crate::http::form::is_form(&parts.headers) {
            let unread = "The page sent something other than a form. Reload it and try again.";
            return Err(crate::error::Error::BadRequest(unread.into()).into());
        }
        let req = Request::from_parts(parts, body);
        let AnyForm(mut fields) = AnyForm::<Map<String, Value>>::from_request(req, state).await?;
        let submitted = match fields.remove("csrf_token") {
            Some(Value::String(token)) => token,
            _ => String::new(),
        };
        if !csrf_matches(&state.config.secret_key, &seed, &submitted) {
            return Err(PageError::Forbidden);
        }
        Ok(Self(parse_value(Value::Object(fields))?))
    }
}

/// A state-changing request must come from our own pages: refuse when the browser says it
/// is cross-site, or when `Origin` names another host than the one addressed.
fn same_origin(parts: &Parts, state: &AppState) -> bool {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // Browsers state the relation themselves, and pages cannot forge it.
    match header("sec-fetch-site") {
        Some("same-origin") => return true,
        Some("cross-site" | "same-site") => return false,
        _ => {}
    }
    let Some(origin) = header(header::ORIGIN.as_str()) else {
        // Browsers send Origin on every POST; clients without it (curl) carry no ambient
        // cookies of a victim, and still need the CSRF token.
        return true;
    };
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    let public = &state.config.public_url;
    let matches_public = origin.origin() == public.origin();
    let authority = match origin.port() {
        Some(port) => format!("{}:{port}", origin.host_str().unwrap_or_default()),
        None => origin.host_str().unwrap_or_default().to_string(),
    };
    let matches_host =
        header(header::HOST.as_str()).is_some_and(|host| host.eq_ignore_ascii_case(&authority));
    matches_public || matches_host
}
