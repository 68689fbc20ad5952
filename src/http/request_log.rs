//! One log line per request: request id, method, matched route, status and latency.
//!
//! The route is the template (`/notes/{id}`), never the raw path or the query string, and no
//! header is logged: paths, queries and headers can carry tokens, cookies or reset links.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::pages;
use crate::error::Error;

type MakeSpan = fn(&Request) -> Span;
type OnResponse = fn(&Response, Duration, &Span);

/// The tracing layer: a span per request carrying its id, method and route, and one event when
/// the response is ready.
pub fn layer()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, MakeSpan, (), OnResponse, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(request_span as MakeSpan)
        .on_request(())
        .on_response(log_response as OnResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// The route is not known yet (routing comes later): `record_route` fills it in.
fn request_span(request: &Request) -> Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = tracing::field::Empty,
    )
}

/// Runs inside the router, once a route matched: names the route template in the request's
/// span (so every line logged while answering carries it) and on the response (for the
/// metrics layer outside the router). Requests that match no route keep neither.
///
/// A handler that panics (a bug) answers here as an internal error (`answer_panic`), so that
/// its 500 keeps the route too. This is the one layer on every route already; a layer of its
/// own would cost one more allocation on every request (`super::app_with`).
pub async fn record_route(route: MatchedPath, request: Request, next: Next) -> Response {
    Span::current().record("route", tracing::field::display(route.as_str()));
    // Read before the request moves into the handler: after a panic it is gone.
    let browser = pages::wants_html(request.headers());
    let mut response = AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| answer_panic(&*panic, browser));
    response.extensions_mut().insert(route);
    response
}

/// A 500 like any internal error, instead of a connection closed without an answer: the error
/// page for a browser, as for a 404, and JSON for an API client. The panic's message goes to
/// the log, never to the client.
fn answer_panic(panic: &(dyn Any + Send), browser: bool) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let error = Error::Internal(anyhow::anyhow!("a request handler panicked: {message}"));
    if browser {
        pages::PageError::Service(error).into_response()
    } else {
        error.into_response()
    }
}

fn log_response(response: &Response, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    // Microsecond precision, printed as milliseconds (`latency_ms=1.742`).
    let latency_ms = latency.as_micros() as f64 / 1000.0;
    if response.status().is_server_error() {
        tracing::error!(status, latency_ms, "request answered");
    } else {
        tracing::info!(status, latency_ms, "request answered");
    }
}
