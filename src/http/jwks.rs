//! `GET /.well-known/jwks.json`: the public keys that verify access tokens (RFC 7517), so other
//! services check tokens without the secret. With HS256 only, the set is empty: the HMAC
//! secret is never published.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::auth::keys::PublicKey;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(jwks))
}

/// A JWK Set (RFC 7517 section 5).
#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// An Ed25519 public key as a JWK (RFC 8037).
#[derive(Serialize, ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    kty: &'static str,
    #[schema(example = "Ed25519")]
    crv: &'static str,
    /// The public key, base64url.
    #[schema(example = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")]
    x: String,
    /// The RFC 7638 thumbprint; tokens name it in their header.
    #[schema(example = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")]
    kid: String,
    #[serde(rename = "use")]
    #[schema(rename = "use", example = "sig")]
    use_: &'static str,
    #[schema(example = "EdDSA")]
    alg: &'static str,
}

impl From<&PublicKey> for Jwk {
    fn from(key: &PublicKey) -> Self {
        Self {
            kty: "OKP",
            crv: "Ed25519",
            x: key.x(),
            kid: key.kid().to_string(),
            use_: "sig",
            alg: "EdDSA",
        }
    }
}

/// The public keys that verify access tokens. Empty while tokens are signed with HS256 only.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    responses((status = 200, description = "The JWK Set", body = JwkSet))
)]
async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let keys = state
        .tokens
        .published_keys()
        .iter()
        .map(Jwk::from)
        .collect();
    // Short enough that a newly added key is picked up well before it signs (README).
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(JwkSet { keys }),
    )
}
