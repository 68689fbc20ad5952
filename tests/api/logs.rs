//! The real binary's logs, at the most verbose levels: one line per request with its id,
//! method, route, status and latency, and never a password, token or cookie.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::process::Process;

const PASSWORD: &str = "never-written-password-1";
const WRONG_PASSWORD: &str = "never-written-wrong-password-2";
const COOKIE: &str = "session=never-logged-cookie-value-3";

/// Drives a whole flow and returns the token it used.
async fn full_flow(process: &Process) -> String {
    let client = reqwest::Client::new();
    let token = process.signup_and_login(&client, "logged", PASSWORD).await;
    let wrong = client
        .post(process.url("/token"))
        .form(&[("username", "logged"), ("password", WRONG_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let me = client
        .get(process.url("/users/me/"))
        .bearer_auth(&token)
        .header("cookie", COOKIE)
        .header("x-request-id", "flow-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let note = client
        .post(process.url("/notes/"))
        .bearer_auth(&token)
        .json(&json!({"text": "a note"}))
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), StatusCode::OK);
    // A token in a query string (a mistake clients make) must not reach the log either.
    let listed = client
        .get(process.url(&format!("/notes/?access_token={token}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    token
}

fn assert_no_secret(stderr: &str, token: &str) {
    let signature = token.rsplit('.').next().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    for secret in [
        PASSWORD,
        WRONG_PASSWORD,
        token,
        signature,
        claims,
        COOKIE,
        "never-logged-cookie-value-3",
    ] {
        assert!(
            !stderr.contains(secret),
            "{secret:?} appears in the log:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_have_request_lines_and_no_secrets() {
    let process = Process::start(&[("RUST_LOG", "trace")]);
    let token = full_flow(&process).await;
    process.terminate();
    let (clean, stderr) = process.wait();
    assert!(clean, "{stderr}");
    assert_no_secret(&stderr, &token);
    let me_line = stderr
        .lines()
        .find(|line| line.contains("request_id=flow-request-1") && line.contains("status="))
        .unwrap_or_else(|| panic!("no request line for /users/me/:\n{stderr}"));
    for part in [
        "method=GET",
        "route=/users/me/",
        "status=200",
        "latency_ms=",
    ] {
        assert!(me_line.contains(part), "{part} missing in {me_line}");
    }
    assert!(stderr.contains("route=/notes/}"), "{stderr}");
    // Logins run on threads of their own (the password lane); their lines keep the request's.
    let issued = stderr
        .lines()
        .find(|line| line.contains("access token issued"))
        .unwrap_or_else(|| panic!("no line for the login:\n{stderr}"));
    assert!(
        issued.contains("request_id=") && issued.contains("route=/token"),
        "{issued}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_no_secrets() {
    let process = Process::start(&[
        ("RUST_LOG", "debug,gatehouse=trace,tower_http=trace"),
        ("LOG_FORMAT", "json"),
    ]);
    let token = full_flow(&process).await;
    process.terminate();
    let (clean, stderr) = process.wait();
    assert!(clean, "{stderr}");
    assert_no_secret(&stderr, &token);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let me = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "flow-request-1" && l["fields"]["status"].is_number())
        .unwrap_or_else(|| panic!("no request line for /users/me/:\n{stderr}"));
    assert_eq!(me["span"]["method"], "GET");
    assert_eq!(me["span"]["route"], "/users/me/");
    assert_eq!(me["fields"]["status"], 200);
    assert!(me["fields"]["latency_ms"].is_number());
}
