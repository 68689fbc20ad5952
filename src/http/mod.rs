//! The HTTP surface. Each area has its own file and `router()`; `app` merges them and adds
//! the layers every response goes through.

mod admin;
mod doc_responses;
pub mod docs;
mod events;
mod extract;
mod form;
mod health;
mod jwks;
mod metrics;
mod notes;
mod pages;
mod password_lane;
mod password_login;
pub mod rate_limit;
mod recovery;
mod request_log;
mod security_headers;
mod session;
mod sessions;
mod token;
mod users;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Redirect, Response};
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use extract::{AdminUser, ApiJson, ApiPath, ApiQuery, AuthUser, BearerSession};
pub use password_lane::PasswordLane;

use crate::auth::login::PasswordCheck;
use crate::auth::recovery::Outbound;
use crate::auth::throttle::CheckQueue;
use crate::auth::{PasswordHasher, TokenKeys};
use crate::clock::Clock;
use crate::config::Config;
use crate::email::Mailer;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
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
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Per client address rate limits (`rate_limit`).
    pub limiter: Arc<rate_limit::RateLimiter>,
    pub mailer: Mailer,
    /// Where logins and sign-ups run (`password_lane`).
    pub password_lane: PasswordLane,
    /// Where one account's password checks take turns (`auth::throttle::CheckQueue`).
    pub password_checks: CheckQueue,
    /// Work a request leaves running after its answer (an emailed link's lookup and send),
    /// which shutdown waits for before closing the database (`Server::run`).
    pub background: TaskTracker,
}

impl AppState {
    /// Runs `work` on the password lane and waits for it (`PasswordLane::run`), giving it this
    /// state with the lane's own database connections in place of the shared ones.
    pub async fn on_password_lane<T, F>(self, work: impl FnOnce(AppState) -> F) -> Result<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let lane = self.password_lane.clone();
        let state = AppState {
            store: lane.store().clone(),
            ..self
        };
        lane.run(work(state)).await
    }

    /// What checking an account's password takes (`auth::login::PasswordCheck`).
    pub fn password_check(&self) -> PasswordCheck<'_> {
        PasswordCheck {
            hasher: &self.hasher,
            throttle: &self.config.abuse.login_throttle,
            queue: &self.password_checks,
            max_wait: self.config.abuse.hash_max_wait,
        }
    }

    /// What the email flows need to send links.
    pub fn outbound(&self) -> Outbound<'_> {
        Outbound {
            mailer: &self.mailer,
            public_url: &self.config.public_url,
            mail: &self.config.mail,
        }
    }
}

/// The whole service: the routes inside the layers every request goes through.
pub fn app(state: AppState) -> App {
    app_with(state, Router::new())
}

/// `app` with routes of your own beside Gatehouse's, behind the same layers: request ids, the
/// request log, security headers, CORS, the body limit, metrics, and a 500 for a handler that
/// panics (`request_log::record_route`). Handlers can take `AuthUser` or `BearerSession` to
/// require a bearer token, `AdminUser` to require a superuser's, and `ApiJson`, `ApiPath` and
/// `ApiQuery` to answer bad input with the API's 422. A route that Gatehouse serves too makes
/// this panic, as axum does for overlapping routes.
///
/// Serve the result with `into_make_service_with_connect_info::<SocketAddr>()`: without the
/// client's address, the rate limits of Gatehouse's routes cannot tell clients apart and let
/// every request through.
/// `Server::with_routes` does this, and the rest of what `gatehouse serve` does.
///
/// The layers wrap the router as one service instead of being added with `Router::layer`,
/// which wraps every route separately: hyper clones the service for each request, and a stack
/// of per-route layers costs one allocation per layer and route clone on every request.
pub fn app_with(state: AppState, routes: Router<AppState>) -> App {
    let request_id = HeaderName::from_static("x-request-id");
    // No origins configured: same-origin only, and no CORS work on each request.
    let cors =
        (!state.config.cors_origins.is_empty()).then(|| cors_layer(&state.config.cors_origins));
    let headers = security_headers::SecurityHeaders {
        https: state.config.is_https(),
    };
    let metrics = state.metrics.clone();
    let service = ServiceBuilder::new()
        // The trace layer wraps the body; one `Response` type for `axum::serve` and tests.
        .map_response(IntoResponse::into_response)
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(request_log::layer())
        .layer(axum::middleware::from_fn_with_state(
            headers,
            security_headers::add,
        ))
        .layer(PropagateRequestIdLayer::new(request_id))
        .option_layer(cors)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track_requests,
        ))
        .service(router_with(state, routes));
    App::new(service)
}

/// The service `app` returns: cheap to clone (once per request).
pub type App = BoxCloneSyncService<Request, Response, Infallible>;

/// The routes with their state, without the outer layers (tests walk its route list). Each
/// matched route records its template for the request log and metrics
/// (`request_log::record_route`).
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// `router` with `routes` merged in (`app_with`).
fn router_with(state: AppState, routes: Router<AppState>) -> Router {
    let (api, api_paths) = docs::router();
    let api_paths: Arc<[String]> = api_paths.into();
    Router::new()
        // The JSON API and its documentation (`/openapi.json`, `/docs`), from one list.
        .merge(api)
        .merge(pages::router())
        .merge(routes)
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        // After the 405 fallback, which replaces each route's own: a 405 keeps its route.
        .route_layer(axum::middleware::from_fn(request_log::record_route))
        .fallback(move |uri, headers| not_found(api_paths, uri, headers))
        .with_state(state)
}

/// A path of the API with the trailing slash added or taken away is sent on to the API's
/// own with a 307 (method and body kept), as FastAPI does (`/token/`, `/notes/1/`). Anything
/// else is a 404, as a page for browsers and as JSON for API clients.
async fn not_found(
    api_paths: Arc<[String]>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let path = uri.path();
    let other = match path.strip_suffix('/') {
        Some(without) if !without.is_empty() => without.to_string(),
        Some(_) => String::new(),
        None => format!("{path}/"),
    };
    // Never a path a browser could read as another host's (`//host`, `/\host`).
    let local = !other.starts_with("//") && !other.contains('\\');
    if local && !other.is_empty() && api_paths.iter().any(|t| path_matches(t, &other)) {
        return temporary_redirect(&other, &uri);
    }
    if pages::wants_html(&headers) {
        pages::PageError::Service(Error::NotFound).into_response()
    } else {
        Error::NotFound.into_response()
    }
}

/// A 307 to `path` with the query of `uri`: the client sends the same method and body there.
fn temporary_redirect(path: &str, uri: &axum::http::Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::temporary(&format!("{path}{query}")).into_response()
}

/// Whether `path` is one the OpenAPI path `template` (`/notes/{id}`) names.
fn path_matches(template: &str, path: &str) -> bool {
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t == p || (t.starts_with('{') && !p.is_empty()) => {}
            _ => return false,
        }
    }
}

/// CORS for the configured origins, so a frontend on another origin (the tutorial's Next.js
/// on port 3000) can call the API with its bearer token. Without credentials: the API never
/// reads cookies, and a credentialed request would carry the browser's session cookie to the
/// pages (which cookies sign in to), letting a script on an allowed origin read them; on
/// `localhost` every port is the same site, so the cookie would go.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        // Whatever the preflight asks for, as the tutorial's backend allowed (`["*"]`): a
        // frontend may send headers of its own (tracing, `X-Requested-With`).
        .allow_headers(AllowHeaders::mirror_request())
}
