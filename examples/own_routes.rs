//! An application built on Gatehouse: its whole command line (`serve`, `migrate`, `user`, ...)
//! with two routes of the application's own beside Gatehouse's.
//!
//! ```sh
//! cargo run --example own_routes
//! curl -s -X POST localhost:8000/token -d 'username=alice&password=...'   # a token
//! curl -s localhost:8000/hello -H "Authorization: Bearer $TOKEN"
//! ```

use std::process::ExitCode;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use gatehouse::cli::run_with;
use gatehouse::error::Error;
use gatehouse::http::{AdminUser, ApiPath, AppState, AuthUser};
use serde_json::{Value, json};

fn main() -> ExitCode {
    let routes = Router::new()
        .route("/hello", get(hello))
        .route("/people/{id}/greeting", get(greeting));
    run_with(routes)
}

/// Any signed-in user; anyone else gets the API's 401.
async fn hello(AuthUser(user): AuthUser) -> Json<Value> {
    Json(json!({ "message": format!("hello {}", user.username) }))
}

/// Superusers only (others get a 403); a path that is not a number gets the API's 422.
async fn greeting(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, Error> {
    // A database outage becomes the API's 503, as in Gatehouse's own handlers.
    let user = state.store.user_by_id(id).await?.ok_or(Error::NotFound)?;
    Ok(Json(
        json!({ "message": format!("hello {}", user.username) }),
    ))
}
