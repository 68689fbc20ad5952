//! The baseline: what `GET /users/me/` costs at the least. Verify the HS256 JWT, then one
//! indexed row lookup; no middleware, no logging, no session.
//!
//! `GET /claims` verifies the same JWT and answers its subject without a query: what any
//! server that answers from memory sees on this machine (scenario 3's reference, since the
//! service's session cache answers `GET /users/me/` without a query too).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::db::{Db, UserRow};
use crate::env;

struct Baseline {
    db: Db,
    key: DecodingKey,
    validation: Validation,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

pub async fn serve() -> anyhow::Result<()> {
    let state = Arc::new(Baseline {
        db: Db::connect().await?,
        key: DecodingKey::from_secret(env("SECRET_KEY")?.as_bytes()),
        validation: Validation::new(Algorithm::HS256),
    });
    let app = axum::Router::new()
        .route("/users/me/", get(me))
        .route("/claims", get(claims))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    let port = std::env::var("BASELINE_PORT").unwrap_or_else(|_| "8100".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn me(
    State(state): State<Arc<Baseline>>,
    headers: HeaderMap,
) -> Result<Json<UserRow>, StatusCode> {
    let claims = verify(&state, &headers)?;
    let user = state
        .db
        .user_by_key(&claims.sub.to_lowercase())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?
        .ok_or(StatusCode::UNAUTHORIZED)?;
    Ok(Json(user))
}

async fn claims(
    State(state): State<Arc<Baseline>>,
    headers: HeaderMap,
) -> Result<String, StatusCode> {
    Ok(verify(&state, &headers)?.sub)
}

fn verify(state: &Baseline, headers: &HeaderMap) -> Result<Claims, StatusCode> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    jsonwebtoken::decode::<Claims>(token, &state.key, &state.validation)
        .map(|data| data.claims)
        .map_err(|_| StatusCode::UNAUTHORIZED)
}
