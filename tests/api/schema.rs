//! Checks response bodies against the schemas that `/openapi.json` documents, so the document
//! cannot drift from what the service really answers.

use reqwest::Response;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::helpers::TestApp;

/// `/openapi.json`, fetched once: it is generated from the code and the same for every app.
static DOCUMENT: OnceCell<Value> = OnceCell::const_new();

impl TestApp {
    /// The OpenAPI document the service serves.
    pub async fn openapi(&self) -> &'static Value {
        DOCUMENT
            .get_or_init(|| async {
                let response = self
                    .client
                    .get(self.url("/openapi.json"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.json().await.unwrap()
            })
            .await
    }

    /// The JSON body of `response`, after asserting that its status is documented for
    /// `method path` (the path as documented, such as `/notes/{id}`) and that the body matches
    /// the documented schema.
    pub async fn documented_json(&self, method: &str, path: &str, response: Response) -> Value {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        if let Err(problem) = check_response(self.openapi().await, method, path, status, &body) {
            panic!("{method} {path} -> {status} breaks the document: {problem}\nbody: {body}");
        }
        body
    }
}

/// Whether `body`, answered with `status` by `method path`, is what the document says.
pub fn check_response(
    document: &Value,
    method: &str,
    path: &str,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    let operation = &document["paths"][path][method.to_ascii_lowercase()];
    if !operation.is_object() {
        return Err(format!("{method} {path} is not documented"));
    }
    let response = &operation["responses"][status.to_string()];
    if !response.is_object() {
        return Err(format!("status {status} is not documented"));
    }
    let Some(schema) = response["content"]["application/json"]["schema"].as_object() else {
        return Err(format!("status {status} documents no JSON body"));
    };
    // The response schema refers to `#/components/...`: validate it with the document's
    // components beside it, as one JSON Schema (OpenAPI 3.1 schemas are JSON Schema 2020-12).
    let mut root = Value::Object(schema.clone());
    root["components"] = document["components"].clone();
    let validator = jsonschema::draft202012::new(&root).map_err(|e| e.to_string())?;
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[tokio::test]
async fn the_checker_refuses_bodies_that_break_the_document() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let document = app.openapi().await;
    let user = json!({"id": 1, "username": "foo", "email": null, "email_verified": false, "full_name": null, "disabled": false});
    assert_eq!(
        check_response(document, "GET", "/users/me/", 200, &user),
        Ok(())
    );
    for (status, body) in [
        (
            200,
            json!({"id": "1", "username": "foo", "disabled": false}),
        ),
        (200, json!({"username": "foo"})),
        (401, json!({"detail": 401})),
        (422, json!({"detail": "not a list"})),
        (418, json!({"detail": "teapot"})),
    ] {
        assert!(
            check_response(document, "GET", "/users/me/", status, &body).is_err(),
            "{status} {body} should break the document"
        );
    }
    let validation =
        json!({"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]});
    assert_eq!(
        check_response(document, "POST", "/notes/", 422, &validation),
        Ok(())
    );
}
