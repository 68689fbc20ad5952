//! SIGTERM: the service stops accepting, finishes the requests in flight and the emails they
//! left sending, then exits cleanly.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::mail::SmtpSink;
use crate::process::Process;

/// Whether `/metrics` shows a password hash running now.
async fn hashing_now(client: &reqwest::Client, process: &Process) -> bool {
    let Ok(response) = client.get(process.url("/metrics")).send().await else {
        return false;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .any(|line| line == "gatehouse_password_hash_slots_in_use 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish() {
    // Costly hashing keeps the sign-up in flight while the signal arrives.
    let process = Process::start(&[
        ("RUST_LOG", "info"),
        ("ARGON2_MEMORY_KIB", "262144"),
        ("ARGON2_ITERATIONS", "8"),
    ]);
    let client = reqwest::Client::new();
    let signup = tokio::spawn(
        client
            .post(process.url("/users/"))
            .json(&json!({"username": "latecomer", "password": "password-in-flight"}))
            .send(),
    );
    let mut in_flight = false;
    for _ in 0..400 {
        if hashing_now(&client, &process).await {
            in_flight = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(in_flight, "the sign-up never showed up as hashing");

    process.terminate();
    let response = signup
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["username"], "latecomer");

    let base = process.base.clone();
    let (clean, stderr) = process.wait();
    assert!(clean, "exits with success: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "nothing listens any more"
    );
}

/// A reset asked for just before a deploy is still mailed: shutdown waits for the emails the
/// requests left in flight (here to an SMTP server that takes a second to accept each one),
/// where it used to exit under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_still_sends_the_emails_requests_left_in_flight() {
    let smtp = SmtpSink::slow(std::time::Duration::from_secs(1));
    let process = Process::start(&[("RUST_LOG", "info"), ("SMTP_URL", &smtp.url)]);
    let client = reqwest::Client::new();
    let alice = json!({
        "username": "alice",
        "password": "correct horse battery",
        "email": "alice@example.com",
    });
    let signup = client.post(process.url("/users/")).json(&alice).send();
    assert_eq!(signup.await.unwrap().status(), StatusCode::OK);
    smtp.expect("alice@example.com", "Confirm").await;

    let reset = client
        .post(process.url("/password-reset"))
        .json(&json!({"username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), StatusCode::ACCEPTED);
    process.terminate();
    let (clean, stderr) = process.wait();
    assert!(clean, "exits with success: {stderr}");
    assert_eq!(
        smtp.count_for("alice@example.com"),
        1,
        "the reset link was sent before the exit: {stderr}"
    );
}
