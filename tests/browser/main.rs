//! End-to-end tests of the pages in a real headless Chromium: what a user sees after each
//! click, the cookies the browser keeps, and what the database holds afterwards.
//!
//! Each scenario runs on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is set. Without
//! Chromium and chromedriver installed they are skipped (in CI that is a failure).

mod browser;
#[path = "../api/helpers.rs"]
#[allow(dead_code)] // the API suite's helpers; these tests use a few of them
mod helpers;
#[path = "../api/mail.rs"]
#[allow(dead_code)] // the API suite's SMTP sink; this binary uses part of it
mod mail;

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use thirtyfour::prelude::*;

use browser::Browser;
use helpers::TestApp;

const PASSWORD: &str = "correct horse battery";
const SESSION_COOKIE: &str = "gatehouse_session";
const THIRTY_DAYS: i64 = 30 * 86_400;

/// Declares each scenario once and runs it on SQLite and (when available) PostgreSQL:
/// `browser_scenarios!(name)` expects `async fn name(browser: &Browser, app: &TestApp)`.
macro_rules! browser_scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::browser::run(crate::helpers::Backend::Sqlite, super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if crate::helpers::Backend::postgres_available() {
                        crate::browser::run(crate::helpers::Backend::Postgres, super::$name)
                            .await
                    }
                }
            )*
        }
    };
}

browser_scenarios!(
    sign_up_lands_on_the_account_page_and_log_out_ends_the_session,
    a_wrong_password_is_refused_in_the_form_then_the_right_one_signs_in,
    notes_are_added_completed_and_deleted_and_stay_private,
    remember_me_keeps_the_session_cookie_for_thirty_days,
    admin_sends_a_signed_out_user_through_login_and_back,
    a_superuser_disables_a_user_from_the_console_and_their_session_ends,
);

async fn sign_up_lands_on_the_account_page_and_log_out_ends_the_session(
    browser: &Browser,
    app: &TestApp,
) {
    browser.open("/signup").await;
    browser.fill("username", "alice").await;
    browser.fill("password", "short").await;
    browser
        .click("form[action='/signup'] button[type=submit]")
        .await;
    let error = browser
        .element("#password-error")
        .await
        .text()
        .await
        .unwrap();
    assert!(error.contains("at least 8 characters"), "{error}");
    let username = browser.element("#username").await.value().await.unwrap();
    assert_eq!(username.as_deref(), Some("alice"), "keeps what was typed");
    assert!(browser.cookie(SESSION_COOKIE).await.is_none());

    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/signup'] button[type=submit]")
        .await;
    browser.wait_for_url("/account").await;
    assert_eq!(signed_in_as(browser).await, "alice");
    let cookie = browser.cookie(SESSION_COOKIE).await.expect("a session");
    assert_session_cookie(&cookie);
    assert_eq!(cookie.expiry, None, "ends with the browser: {cookie:?}");
    assert_eq!(
        app.fetch_text("SELECT username FROM users WHERE username = $1", "alice")
            .await
            .as_deref(),
        Some("alice")
    );
    assert_eq!(session_count(app, "alice").await, "1");

    browser.click("#logout").await;
    browser.wait_for_url("/login?notice=signed-out").await;
    browser.wait_for_text("You have been signed out.").await;
    assert!(browser.cookie(SESSION_COOKIE).await.is_none());
    assert_eq!(
        session_count(app, "alice").await,
        "0",
        "the session is gone"
    );

    browser.open("/account").await;
    browser.wait_for_url("/login?next=%2Faccount").await;
    browser.wait_for_text("Sign in to your account").await;
}

async fn a_wrong_password_is_refused_in_the_form_then_the_right_one_signs_in(
    browser: &Browser,
    app: &TestApp,
) {
    sign_up_through_the_api(app, "alice").await;
    browser.open("/login").await;
    log_in(browser, "alice", "not the password", false).await;

    let error = browser.element("#login-error").await.text().await.unwrap();
    assert_eq!(error, "Incorrect username or password");
    browser.wait_for_url("/login").await;
    let username = browser.element("#username").await.value().await.unwrap();
    assert_eq!(username.as_deref(), Some("alice"), "keeps the username");
    let password = browser.element("#password").await.value().await.unwrap();
    assert_eq!(password.as_deref(), Some(""), "never echoes the password");
    assert!(
        browser.driver.get_alert_text().await.is_err(),
        "the error is on the page, not in a dialog"
    );
    assert!(browser.cookie(SESSION_COOKIE).await.is_none());

    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/login'] button[type=submit]")
        .await;
    browser.wait_for_url("/account").await;
    assert_eq!(signed_in_as(browser).await, "alice");
}

async fn notes_are_added_completed_and_deleted_and_stay_private(browser: &Browser, app: &TestApp) {
    sign_up(browser, "alice").await;
    browser.open("/notes").await;
    browser.wait_for_text("No notes yet.").await;
    let milk = add_note(browser, app, "buy milk").await;
    let secret = add_note(browser, app, "alice's secret").await;
    assert!(browser.page_text().await.contains("alice's secret"));

    browser
        .click(&format!("#note-{milk} form[action$='/toggle'] button"))
        .await;
    let done = browser.element(&format!("#note-{milk}.done")).await;
    let shown = done.text().await.unwrap();
    assert!(
        shown.contains("Done") && shown.contains("Mark not done"),
        "{shown}"
    );
    let open = browser.element(&format!("#note-{secret}")).await;
    assert!(
        !open.text().await.unwrap().contains("Done"),
        "only that note"
    );
    let completed = app
        .fetch_text(
            "SELECT CAST(completed AS TEXT) FROM notes WHERE text = $1",
            "buy milk",
        )
        .await
        .unwrap();
    assert!(is_true(&completed), "stored as completed: {completed}");

    browser
        .click(&format!("#note-{milk} form[action$='/delete'] button"))
        .await;
    gone(browser, &format!("#note-{milk}")).await;
    assert!(!browser.page_text().await.contains("buy milk"));
    let stored = app
        .fetch_text("SELECT text FROM notes WHERE text = $1", "buy milk")
        .await;
    assert_eq!(stored, None, "deleted from the database");

    browser
        .click("header form[action='/account/logout'] button[type=submit]")
        .await;
    browser.wait_for_url("/login?notice=signed-out").await;
    sign_up(browser, "bob").await;
    browser.open("/notes").await;
    browser.wait_for_text("No notes yet.").await;
    assert!(!browser.page_text().await.contains("alice's secret"));
    assert!(!browser.driver.source().await.unwrap().contains("secret"));
}

async fn remember_me_keeps_the_session_cookie_for_thirty_days(browser: &Browser, app: &TestApp) {
    sign_up_through_the_api(app, "alice").await;
    browser.open("/login").await;
    log_in(browser, "alice", PASSWORD, true).await;
    browser.wait_for_url("/account").await;
    browser.wait_for_text("Browser (remembered)").await;
    let cookie = browser.cookie(SESSION_COOKIE).await.expect("a session");
    assert_session_cookie(&cookie);
    let expiry = cookie.expiry.expect("a persistent cookie has an expiry");
    let ahead = expiry - now();
    assert!(
        (ahead - THIRTY_DAYS).abs() < 3600,
        "expires about 30 days from now, not in {ahead} s"
    );
    assert!(is_true(&latest_session_persistent(app, "alice").await));

    browser.click("#logout").await;
    browser.wait_for_url("/login?notice=signed-out").await;
    log_in(browser, "alice", PASSWORD, false).await;
    browser.wait_for_url("/account").await;
    assert_eq!(signed_in_as(browser).await, "alice");
    assert!(!browser.page_text().await.contains("(remembered)"));
    let cookie = browser.cookie(SESSION_COOKIE).await.expect("a session");
    assert_session_cookie(&cookie);
    assert_eq!(cookie.expiry, None, "a browser-session cookie: {cookie:?}");
    assert!(!is_true(&latest_session_persistent(app, "alice").await));
}

async fn admin_sends_a_signed_out_user_through_login_and_back(browser: &Browser, app: &TestApp) {
    sign_up_through_the_api(app, "alice").await;
    browser.open("/admin").await;
    browser.wait_for_url("/login?next=%2Fadmin").await;
    let next = browser.element("input[name='next']").await.value().await;
    assert_eq!(next.unwrap().as_deref(), Some("/admin"));

    log_in(browser, "alice", PASSWORD, false).await;
    browser.wait_for_url("/admin").await;
    let shown = browser
        .element("#admin-username")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(shown, "alice");
}

async fn a_superuser_disables_a_user_from_the_console_and_their_session_ends(
    browser: &Browser,
    app: &TestApp,
) {
    sign_up_through_the_api(app, "root").await;
    let store = &app.state.store;
    let root = store.user_by_key("root").await.unwrap().unwrap();
    store
        .set_superuser(root.id, true, chrono::Utc::now())
        .await
        .unwrap();
    sign_up_through_the_api(app, "bob").await;
    sign_up_through_the_api(app, "carol").await;
    let bob_token = app.token_for("bob", PASSWORD).await;
    let bob = store.user_by_key("bob").await.unwrap().unwrap();

    browser.open("/admin").await;
    log_in(browser, "root", PASSWORD, false).await;
    browser.wait_for_url("/admin").await;
    browser.wait_for_text("3 users").await;
    browser.fill("q", "bo").await;
    browser.click("#search").await;
    browser.wait_for_url("/admin?q=bo").await;
    browser.wait_for_text("1 user matching").await;
    assert!(!browser.page_text().await.contains("carol"));
    browser.click(&format!("#user-{} a", bob.id)).await;
    browser
        .wait_for_url(&format!("/admin/people/{}", bob.id))
        .await;
    browser.wait_for_text("API login").await;

    browser.click("#disable").await;
    browser
        .wait_for_url(&format!("/admin/people/{}?notice=disabled", bob.id))
        .await;
    browser.wait_for_text("No live sessions.").await;
    let status = browser.element("#user-status").await.text().await.unwrap();
    assert_eq!(status, "disabled");
    let sessions = app
        .fetch_text(
            "SELECT CAST(COUNT(*) AS TEXT) FROM sessions WHERE user_id = \
             (SELECT id FROM users WHERE username = $1)",
            "bob",
        )
        .await;
    assert_eq!(sessions.as_deref(), Some("0"), "bob's session has ended");
    assert_eq!(
        app.get_me(&bob_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let actor = app
        .fetch_text(
            "SELECT CAST(actor_id AS TEXT) FROM events WHERE kind = 'admin_action' AND detail = $1",
            "disabled",
        )
        .await;
    assert_eq!(actor, Some(root.id.to_string()), "recorded with its actor");
}

async fn sign_up_through_the_api(app: &TestApp, username: &str) {
    let response = app.signup(username, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK, "sign-up of {username}");
}

/// Signs up through the page, ending on the account page.
async fn sign_up(browser: &Browser, username: &str) {
    browser.open("/signup").await;
    browser.fill("username", username).await;
    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/signup'] button[type=submit]")
        .await;
    browser.wait_for_url("/account").await;
    assert_eq!(signed_in_as(browser).await, username);
}

/// Fills and sends the login form the browser is showing.
async fn log_in(browser: &Browser, username: &str, password: &str, remember: bool) {
    browser.fill("username", username).await;
    browser.fill("password", password).await;
    let checkbox = browser.element("#remember-me").await;
    if checkbox.is_selected().await.unwrap() != remember {
        checkbox.click().await.unwrap();
    }
    browser
        .click("form[action='/login'] button[type=submit]")
        .await;
}

/// Adds a note through the form and returns its id once the list shows it.
async fn add_note(browser: &Browser, app: &TestApp, text: &str) -> String {
    browser.fill("text", text).await;
    browser.click("form.add-note button[type=submit]").await;
    let id = browser
        .wait_for(&format!("the note {text:?} to be stored"), async |_| {
            app.fetch_text("SELECT CAST(id AS TEXT) FROM notes WHERE text = $1", text)
                .await
        })
        .await;
    let item = browser.element(&format!("#note-{id} .note-text")).await;
    assert_eq!(item.text().await.unwrap(), text);
    id
}

/// Waits until no element matches `css` (the page that had it has been replaced).
async fn gone(browser: &Browser, css: &str) {
    browser
        .wait_for(&format!("{css} to disappear"), async |driver| {
            let found = driver.find_all(By::Css(css)).await.ok()?;
            found.is_empty().then_some(())
        })
        .await;
}

async fn signed_in_as(browser: &Browser) -> String {
    browser.element("#signed-in-as").await.text().await.unwrap()
}

fn assert_session_cookie(cookie: &Cookie) {
    assert_eq!(cookie.http_only, Some(true), "scripts cannot read it");
    assert_eq!(cookie.same_site, Some(SameSite::Lax));
    assert_eq!(cookie.path.as_deref(), Some("/"));
    assert_ne!(cookie.secure, Some(true), "plain http in tests");
}

async fn session_count(app: &TestApp, username: &str) -> String {
    app.fetch_text(
        "SELECT CAST(COUNT(*) AS TEXT) FROM sessions \
         WHERE kind = 'browser' AND user_id = (SELECT id FROM users WHERE username = $1)",
        username,
    )
    .await
    .unwrap()
}

async fn latest_session_persistent(app: &TestApp, username: &str) -> String {
    app.fetch_text(
        "SELECT CAST(persistent AS TEXT) FROM sessions \
         WHERE kind = 'browser' AND user_id = (SELECT id FROM users WHERE username = $1) \
         ORDER BY id DESC LIMIT 1",
        username,
    )
    .await
    .expect("a session")
}

/// A boolean read back as text: SQLite says `1`, PostgreSQL `true`.
fn is_true(value: &str) -> bool {
    matches!(value, "1" | "true")
}

fn now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_secs()).unwrap()
}

/// The reset email's link, followed in the browser: a new password, and the old one gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_link_from_the_email_sets_a_new_password() {
    let smtp = mail::SmtpSink::start();
    let url = smtp.url.clone();
    let adjust = move |config: &mut gatehouse::config::Config| config.mail.smtp_url = Some(url);
    browser::run_with(helpers::Backend::Sqlite, adjust, async |browser, app| {
        let body = serde_json::json!({"username": "alice", "password": PASSWORD, "email": "alice@example.com"});
        assert_eq!(app.post_json("/users/", &body).await.status(), StatusCode::OK);
        smtp.expect("alice@example.com", "Confirm").await;

        browser.open("/login").await;
        browser.click("a[href='/forgot-password']").await;
        browser.fill("identifier", "alice@example.com").await;
        browser.click("button[type=submit].full").await;
        browser.wait_for_text("a link to reset its password has been sent").await;

        let mail = smtp.expect("alice@example.com", "Reset your Gatehouse password").await;
        let link = mail.link("/reset-password");
        browser.open(link.strip_prefix(&app.base).expect("a link to this service")).await;
        // The token leaves the address bar at once (and with it the history).
        browser.wait_for_url("/reset-password").await;
        browser.fill("new_password", "a brand new passphrase").await;
        browser.click("button[type=submit].full").await;
        browser.wait_for_url("/login?notice=password-reset").await;
        browser.wait_for_text("Your password has been reset").await;

        browser.fill("username", "alice").await;
        browser.fill("password", PASSWORD).await;
        browser.click("button[type=submit].full").await;
        browser.wait_for_text("Incorrect username or password").await;
        browser.fill("password", "a brand new passphrase").await;
        browser.click("button[type=submit].full").await;
        browser.wait_for_url("/account").await;

        // The link works once; opened again, it offers the way to a new one.
        browser.open(link.strip_prefix(&app.base).unwrap()).await;
        browser.wait_for_text("invalid or has expired").await;
        browser.click("a[href='/forgot-password']").await;
        browser.wait_for_url("/forgot-password").await;
    })
    .await;
}
