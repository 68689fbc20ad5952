//! Headers on every response (OWASP ASVS 5.0 V3 and V14): no MIME sniffing, no referrer
//! beyond this origin (not `no-referrer`: browsers without Fetch Metadata would then send
//! `Origin: null` with our own forms, which the CSRF origin check refuses), a
//! Content-Security-Policy without inline script for pages and that allows nothing for
//! everything else (JSON, files: as the OWASP REST cheat sheet advises), no framing, HSTS over
//! https, and
//! `Cache-Control: no-store` unless the handler chose a cache policy (static files, the JWK
//! Set), so tokens and account data never sit in a shared or browser cache (RFC 6749 5.1).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::docs::DOCS_PATH;

/// Pages: scripts and styles from this origin only (the password hint is `/static/`).
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Swagger UI loads its scripts from files (no inline script), but React sets inline styles
/// and its icons are `data:` images.
const DOCS_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Anything that is not a page: nothing may load or frame it.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Whether the public address is https (then browsers are told to keep to it).
#[derive(Debug, Clone, Copy)]
pub struct SecurityHeaders {
    pub https: bool,
}

pub async fn add(
    State(settings): State<SecurityHeaders>,
    request: Request,
    next: Next,
) -> Response {
    let docs = request.uri().path().starts_with(DOCS_PATH);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let page = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let policy = match (page, docs) {
        (false, _) => API_POLICY,
        (true, true) => DOCS_POLICY,
        (true, false) => PAGE_POLICY,
    };
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if settings.https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
