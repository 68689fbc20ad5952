//! The HTTP surface. Each area has its own file and `router()`; `app` merges them and adds
//! the layers every response goes through.

mod extract;
mod form;
mod health;
mod notes;
mod token;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use extract::{ApiJson, AuthUser};

use crate::auth::{PasswordHasher, TokenKeys};
use crate::config::Config;
use crate::error::Error;
use crate::store::Store;

/// Request bodies above this size get a 413.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Everything a handler may need, cloned cheaply into each request.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub hasher: PasswordHasher,
    pub tokens: Arc<TokenKeys>,
    pub config: Arc<Config>,
}

/// The whole service as a `Router`, separate from serving so tests can drive it.
pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let cors = cors_layer(&state.config.cors_origins);
    Router::new()
        .merge(users::router())
        .merge(token::router())
        .merge(notes::router())
        .merge(health::router())
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|| async {
            Error::MethodNotAllowed
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(cors)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
                // The path only: query strings can carry tokens.
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// CORS for the configured origins, with credentials, so a frontend on another origin (the
/// tutorial's Next.js on port 3000) can call the API. No origins: same-origin only.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
}
