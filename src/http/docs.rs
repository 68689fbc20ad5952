//! The OpenAPI document and Swagger UI.
//!
//! Every JSON route is registered here, through `utoipa_axum::routes!`, so the router that
//! serves the API and the document that describes it come from one list: a handler without
//! `#[utoipa::path]` cannot be registered that way. `/openapi.json` serves the document and
//! `/docs` a Swagger UI built into the binary, whose "Authorize" button logs in with the OAuth2
//! password flow against `/token`.

use axum::Router;
use serde::Serialize;
use utoipa::openapi::security::{Flow, OAuth2, Password, Scopes, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;
use crate::error::FieldError;

/// The name of the security scheme, as FastAPI calls it.
pub const SECURITY_SCHEME: &str = "OAuth2PasswordBearer";

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        description = "Sign-up, OAuth2 password login with JWT bearer tokens, the signed-in \
                       user and their notes. Errors are `{\"detail\": \"...\"}`; validation \
                       errors (422) list `{\"loc\", \"msg\", \"type\"}` entries.",
    ),
    components(schemas(ErrorBody, ValidationErrorBody, FieldError)),
    modifiers(&PasswordFlow),
    tags(
        (name = "auth", description = "Sign-up and login"),
        (name = "users", description = "The signed-in user"),
        (name = "notes", description = "The signed-in user's notes"),
        (name = "operations", description = "Probes and metrics"),
        (name = "admin", description = "Administration, for superusers"),
    )
)]
struct ApiDoc;

/// `{"detail": "..."}`: every error except validation.
#[derive(Serialize, ToSchema)]
#[schema(as = HTTPError)]
pub struct ErrorBody {
    pub detail: String,
}

/// `{"detail": [{"loc", "msg", "type"}, ...]}`: a 422.
#[derive(Serialize, ToSchema)]
#[schema(as = HTTPValidationError)]
pub struct ValidationErrorBody {
    pub detail: Vec<FieldError>,
}

/// The OAuth2 password flow, so Swagger UI's "Authorize" asks for a username and password.
struct PasswordFlow;

impl Modify for PasswordFlow {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
                "/token",
                Scopes::new(),
            ))])),
        );
    }
}

/// Every JSON route of the service, each with its documentation.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(super::users::router())
        .merge(super::token::router())
        .merge(super::jwks::router())
        .merge(super::sessions::router())
        .merge(super::recovery::router())
        .merge(super::events::router())
        .merge(super::notes::router())
        .merge(super::admin::router())
        .merge(super::health::router())
        .merge(super::metrics::router())
}

/// The OpenAPI document that `/openapi.json` serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// The API routes, plus `/openapi.json` and Swagger UI at `/docs`; and the API's paths, as
/// the document names them (`/notes/{id}`).
pub fn router() -> (Router<AppState>, Vec<String>) {
    let (api, openapi) = api_routes().split_for_parts();
    let paths = openapi.paths.paths.keys().cloned().collect();
    let router = api.merge(SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, openapi));
    (router, paths)
}

/// The same handler served (and documented) at a second path, such as the form without the
/// trailing slash. Its operation ids get a suffix, since they must be unique.
pub fn also_at<S: Clone + Send + Sync + 'static>(
    routes: UtoipaMethodRouter<S>,
    alias: &str,
) -> [UtoipaMethodRouter<S>; 2] {
    let (schemas, paths, method_router) = routes;
    let mut alias_paths = paths.clone();
    alias_paths.paths = paths
        .paths
        .values()
        .map(|item| {
            let mut item = item.clone();
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(id) = &mut operation.operation_id {
                    id.push_str("_alias");
                }
            }
            (alias.to_string(), item)
        })
        .collect();
    [
        (schemas.clone(), paths, method_router.clone()),
        (schemas, alias_paths, method_router),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_1_with_the_password_flow() {
        let doc = serde_json::to_value(openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let scheme = &doc["components"]["securitySchemes"][SECURITY_SCHEME];
        assert_eq!(scheme["type"], "oauth2");
        assert_eq!(scheme["flows"]["password"]["tokenUrl"], "/token");
        assert!(doc["paths"]["/users/me/"]["get"].is_object());
        assert!(doc["paths"]["/users/me"]["get"].is_object());
        assert_ne!(
            doc["paths"]["/users/me/"]["get"]["operationId"],
            doc["paths"]["/users/me"]["get"]["operationId"]
        );
    }
}
