//! `GET /metrics` in the Prometheus text format, and the middleware that counts requests.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::metrics::{CONTENT_TYPE, Gauges, Metrics, UNMATCHED_ROUTE};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Counters, histograms and gauges for Prometheus. Not authenticated: expose it to the
/// monitoring network only.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", body = String,
         content_type = "text/plain"),
    )
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let active_sessions = match state.store.count_active_sessions(Utc::now()).await {
        Ok(count) => Some(count),
        Err(error) => {
            tracing::warn!(%error, "cannot count active sessions for /metrics");
            None
        }
    };
    let gauges = Gauges {
        hash_slots: state.hasher.slots(),
        hash_slots_in_use: state.hasher.slots_in_use(),
        hash_waiting: state.hasher.waiting(),
        active_sessions,
        session_cache: state.store.session_cache_stats(),
    };
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(gauges),
    )
        .into_response()
}

/// Counts each request by method, matched route template (never the raw path, whose values
/// are unbounded and may carry secrets) and status, and observes its latency. Runs outside
/// the router: the route comes back on the response (`request_log::record_route`).
pub async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    metrics.observe_request(method, route, response.status(), started.elapsed());
    response
}

/// Standard methods by name; anything else in one bucket, so labels stay bounded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
