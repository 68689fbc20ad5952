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

/// In production without `SMTP_URL` the outbox still keeps each message, for its owner only,
/// but its link (a live reset link) stays out of the log, and the start warns that nobody
/// receives the mail. On a developer's machine the log shows the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_production_the_outbox_keeps_reset_links_out_of_the_log() {
    for production in [true, false] {
        let env = if production {
            "production"
        } else {
            "development"
        };
        let process = Process::start(&[("RUST_LOG", "info"), ("GATEHOUSE_ENV", env)]);
        let client = reqwest::Client::new();
        let body = json!({"username": "alice", "password": PASSWORD, "email": "a@example.com"});
        let signup = client.post(process.url("/users/")).json(&body);
        assert_eq!(signup.send().await.unwrap().status(), StatusCode::OK);
        let reset = client.post(process.url("/password-reset"));
        let sent = reset.json(&json!({"username": "alice"})).send().await;
        assert_eq!(sent.unwrap().status(), StatusCode::ACCEPTED);

        let outbox = process.dir().join("data").join("outbox");
        let mut token = None;
        for _ in 0..200 {
            token = reset_token_in(&outbox);
            if token.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let token = token.expect("the reset message in the outbox");
        process.terminate();
        let (clean, stderr) = process.wait();
        assert!(clean, "{stderr}");
        assert_eq!(stderr.contains(&token), !production, "{env}:\n{stderr}");
        let warned = stderr.contains("without SMTP_URL");
        assert_eq!(warned, production, "{env}:\n{stderr}");
    }
}

/// The token of the reset link in an outbox file, if one is there; asserts that the files
/// are for their owner only.
fn reset_token_in(outbox: &std::path::Path) -> Option<String> {
    for entry in std::fs::read_dir(outbox).ok()? {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        // Quoted-printable: join the soft line breaks, then decode the `=` it escapes.
        let text = text
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        if let Some(start) = text.find("/reset-password?token=") {
            let rest = &text[start + "/reset-password?token=".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            return Some(rest[..end].to_string());
        }
    }
    None
}
