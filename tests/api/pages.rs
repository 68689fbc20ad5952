//! The pages over plain HTTP: statuses, redirects, cookie attributes, CSRF and origin
//! refusals, open-redirect refusal, and one user's notes invisible to another.

use gatehouse::config::LoginThrottle;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, csrf_in, spawn_app, spawn_app_with};
use crate::metrics::{sample, scrape};

both_backends!(
    pages_render_for_visitors,
    signup_page_signs_in_with_a_session_cookie_stored_as_a_hash,
    remember_me_makes_the_cookie_persistent,
    login_failure_rerenders_the_form_with_the_username,
    forms_without_a_valid_csrf_token_or_from_another_origin_are_403,
    next_is_followed_only_when_relative,
    signed_out_visitors_are_sent_to_login,
    every_sign_in_issues_a_new_session_and_logout_ends_it_server_side,
    notes_pages_show_only_the_owners_notes,
    session_cookie_does_not_authorise_the_json_api,
    signup_page_shows_the_api_rules,
    account_page_lists_sessions_ends_them_and_changes_the_password,
);

/// The `Set-Cookie` header for `name`, if the response sets it.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

impl TestApp {
    async fn page(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap()
    }

    /// The CSRF token of a page's forms (following one redirect: /login sends a signed-in
    /// visitor on to /account, whose log-out form has one).
    async fn csrf_from(&self, path: &str) -> String {
        let mut response = self.page(path).await;
        if response.status() == StatusCode::SEE_OTHER {
            response = self.page(location(&response)).await;
        }
        csrf_in(&response.text().await.unwrap())
    }

    /// Posts a page form with the CSRF token of `from`, as a browser would.
    async fn submit(&self, from: &str, action: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = self.csrf_from(from).await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &csrf));
        self.client
            .post(self.url(action))
            .header("origin", &self.base)
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    async fn page_signup(&self, username: &str) -> reqwest::Response {
        self.submit(
            "/signup",
            "/signup",
            &[
                ("username", username),
                ("password", "correct horse battery"),
            ],
        )
        .await
    }

    async fn page_login(&self, username: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut fields = vec![
            ("username", username),
            ("password", "correct horse battery"),
        ];
        fields.extend_from_slice(extra);
        self.submit("/login", "/login", &fields).await
    }

    async fn session_hashes(&self) -> Vec<String> {
        let mut hashes = Vec::new();
        for name in ["alice", "bob"] {
            if let Some(h) = self
                .fetch_text(
                    "SELECT s.token_hash FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = $1",
                    name,
                )
                .await
            {
                hashes.push(h);
            }
        }
        hashes
    }
}

fn location(response: &reqwest::Response) -> &str {
    response.headers()[LOCATION].to_str().unwrap()
}

async fn pages_render_for_visitors(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/", "/login", "/signup"] {
        let response = app.page(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let csrf = set_cookie(&response, "gatehouse_csrf");
        let html = response.text().await.unwrap();
        assert!(html.contains("Gatehouse"), "{path}");
        if path != "/" {
            assert!(!csrf_in(&html).is_empty());
        }
        if let Some(cookie) = csrf {
            assert!(
                cookie.contains("HttpOnly")
                    && cookie.contains("SameSite=Lax")
                    && cookie.contains("Path=/")
            );
        }
    }
    let login = app.page("/login").await.text().await.unwrap();
    for needle in [
        "autocomplete=\"username\"",
        "autocomplete=\"current-password\"",
        "Remember me",
        "Forgot your password?",
        "Sign in",
    ] {
        assert!(login.contains(needle), "login page has {needle}");
    }
    assert!(
        app.page("/signup")
            .await
            .text()
            .await
            .unwrap()
            .contains("autocomplete=\"new-password\"")
    );
    let css = app
        .client
        .get(app.url("/static/app.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let missing = app.page("/nowhere").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.unwrap().contains("Page not found"));
}

async fn signup_page_signs_in_with_a_session_cookie_stored_as_a_hash(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.page_signup("alice").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/account");
    let cookie = set_cookie(&response, "gatehouse_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} has {attribute}");
    }
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "ends with the browser: {cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http in tests");

    let token = cookie_value(&cookie);
    let stored = app.session_hashes().await;
    assert_eq!(
        stored,
        vec![hex::encode(Sha256::digest(token.as_bytes()))],
        "only the hash is stored"
    );

    let account = app.page("/account").await;
    assert_eq!(account.status(), StatusCode::OK);
    assert!(
        account
            .text()
            .await
            .unwrap()
            .contains("<strong id=\"signed-in-as\">alice</strong>")
    );
}

async fn remember_me_makes_the_cookie_persistent(backend: Backend) {
    let app = spawn_app(backend).await;
    app.page_signup("alice").await;
    let response = app.page_login("alice", &[("remember-me", "on")]).await;
    let cookie = set_cookie(&response, "gatehouse_session").unwrap();
    assert!(cookie.contains("Max-Age=2592000"), "30 days: {cookie}");
}

async fn login_failure_rerenders_the_form_with_the_username(backend: Backend) {
    let app = spawn_app(backend).await;
    app.page_signup("alice").await;
    app.submit("/account", "/account/logout", &[]).await;
    let response = app
        .submit(
            "/login",
            "/login",
            &[("username", "alice"), ("password", "wrong password")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&response, "gatehouse_session").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("Incorrect username or password"));
    assert!(html.contains("value=\"alice\""), "keeps the username");
    assert!(!html.contains("alert("));

    let signed_in = app.page_login("alice", &[]).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    // Page logins are counted apart from the API's; signing up is not a login.
    let text = scrape(&app).await;
    for (channel, outcome, count) in [
        ("page", "bad_credentials", 1.0),
        ("page", "success", 1.0),
        ("api", "bad_credentials", 0.0),
        ("api", "success", 0.0),
    ] {
        let series =
            format!(r#"gatehouse_logins_total{{channel="{channel}",outcome="{outcome}"}}"#);
        assert_eq!(sample(&text, &series), Some(count), "{series} in\n{text}");
    }
}

async fn forms_without_a_valid_csrf_token_or_from_another_origin_are_403(backend: Backend) {
    let app = spawn_app(backend).await;
    app.page_signup("alice").await;
    let csrf = app.csrf_from("/notes").await;
    let post = |fields: Vec<(&'static str, String)>, origin: Option<&'static str>| {
        let mut request = app.client.post(app.url("/notes")).form(&fields);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let missing = post(vec![("text", "x".into())], None).await.unwrap();
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    let html = missing.text().await.unwrap();
    assert!(html.contains("Request refused"), "{html}");
    // A browser that blocks cookies never gets past this page: it says so.
    assert!(html.contains("Signing in needs cookies"), "{html}");
    let wrong = post(
        vec![("text", "x".into()), ("csrf_token", "forged".into())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let cross = post(
        vec![("text", "x".into()), ("csrf_token", csrf.clone())],
        Some("https://evil.example"),
    )
    .await
    .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let cross_site = app
        .client
        .post(app.url("/notes"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("text", "x"), ("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    // Something other than a form, from our own origin with the cookie: a 400 page that says
    // so, not a refusal that blames the token.
    let not_a_form = app
        .client
        .post(app.url("/notes"))
        .header("origin", &app.base)
        .header("content-type", "text/plain")
        .body(format!("text=x&csrf_token={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_form.status(), StatusCode::BAD_REQUEST);
    let html = not_a_form.text().await.unwrap();
    assert!(html.contains("something other than a form"), "{html}");
    assert_eq!(
        app.fetch_text("SELECT text FROM notes WHERE text = $1", "x")
            .await,
        None
    );

    let ok = post(
        vec![("text", "x".into()), ("csrf_token", csrf)],
        Some("http://127.0.0.1"),
    )
    .await
    .unwrap();
    assert_eq!(
        ok.status(),
        StatusCode::FORBIDDEN,
        "an origin on another port is another origin"
    );
    let good = app.submit("/notes", "/notes", &[("text", "kept")]).await;
    assert_eq!(good.status(), StatusCode::SEE_OTHER);
    assert!(
        app.fetch_text("SELECT text FROM notes WHERE text = $1", "kept")
            .await
            .is_some()
    );

    // A login form posted from another site is refused too (login CSRF).
    let fresh = reqwest::Client::new();
    let login = fresh
        .post(app.url("/login"))
        .form(&[("username", "alice"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::FORBIDDEN);
}

async fn next_is_followed_only_when_relative(backend: Backend) {
    let app = spawn_app(backend).await;
    app.page_signup("alice").await;
    for (next, expected) in [
        ("/admin", "/admin"),
        ("/notes?filter=1", "/notes?filter=1"),
        ("https://evil.example/", "/account"),
        ("//evil.example", "/account"),
        ("/\\evil.example", "/account"),
        ("javascript:alert(1)", "/account"),
    ] {
        let response = app.page_login("alice", &[("next", next)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(location(&response), expected, "{next}");
    }
}

async fn signed_out_visitors_are_sent_to_login(backend: Backend) {
    let app = spawn_app(backend).await;
    for (path, target) in [
        ("/admin", "/login?next=%2Fadmin"),
        ("/account", "/login?next=%2Faccount"),
        ("/notes", "/login?next=%2Fnotes"),
    ] {
        let response = app.page(path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&response), target);
    }
    app.page_signup("alice").await;
    let admin = app.page("/admin").await;
    assert_eq!(admin.status(), StatusCode::OK);
    assert!(
        admin
            .text()
            .await
            .unwrap()
            .contains("<p id=\"admin-username\">alice</p>")
    );
}

async fn every_sign_in_issues_a_new_session_and_logout_ends_it_server_side(backend: Backend) {
    let app = spawn_app(backend).await;
    let first =
        cookie_value(&set_cookie(&app.page_signup("alice").await, "gatehouse_session").unwrap());
    let second = cookie_value(
        &set_cookie(&app.page_login("alice", &[]).await, "gatehouse_session").unwrap(),
    );
    assert_ne!(first, second, "a new session id at every sign-in");
    assert_eq!(
        app.session_hashes().await.len(),
        1,
        "the browser's previous session ended"
    );

    let logout = app.submit("/account", "/account/logout", &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&logout), "/login?notice=signed-out");
    assert!(app.session_hashes().await.is_empty(), "deleted server-side");

    // Replaying the old cookie value does not sign anyone in.
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = replay
        .get(app.url("/account"))
        .header("cookie", format!("gatehouse_session={second}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

async fn notes_pages_show_only_the_owners_notes(backend: Backend) {
    let alice = spawn_app(backend).await;
    alice.page_signup("alice").await;
    alice
        .submit("/notes", "/notes", &[("text", "alice's secret")])
        .await;
    let html = alice.page("/notes").await.text().await.unwrap();
    assert!(
        html.contains("alice&#39;s secret") || html.contains("alice&#x27;s secret"),
        "{html}"
    );
    let note_id = alice
        .fetch_text(
            "SELECT CAST(id AS TEXT) FROM notes WHERE text = $1",
            "alice's secret",
        )
        .await
        .unwrap();

    // A second browser on the same service.
    let mut bob = spawn_app(Backend::Sqlite).await;
    bob.base = alice.base.clone();
    bob.page_signup("bob").await;
    assert!(
        !bob.page("/notes")
            .await
            .text()
            .await
            .unwrap()
            .contains("secret")
    );
    let toggle = bob
        .submit("/notes", &format!("/notes/{note_id}/toggle"), &[])
        .await;
    assert_eq!(toggle.status(), StatusCode::NOT_FOUND);
    let delete = bob
        .submit("/notes", &format!("/notes/{note_id}/delete"), &[])
        .await;
    assert_eq!(delete.status(), StatusCode::NOT_FOUND);
    assert!(
        alice
            .fetch_text("SELECT text FROM notes WHERE text = $1", "alice's secret")
            .await
            .is_some()
    );

    let toggle = format!("/notes/{note_id}/toggle");
    let done = async || {
        alice
            .page("/notes")
            .await
            .text()
            .await
            .unwrap()
            .contains("note done")
    };
    // A form from before the button said what it wants flips the note.
    let toggled = alice.submit("/notes", &toggle, &[]).await;
    assert_eq!(toggled.status(), StatusCode::SEE_OTHER);
    assert!(done().await);
    // The button sends the state it asks for: a double click leaves it so.
    let page = alice.page("/notes").await.text().await.unwrap();
    assert!(
        page.contains(r#"name="completed" value="false""#),
        "a done note's button asks for not done: {page}"
    );
    for wanted in ["false", "false"] {
        let sent = alice
            .submit("/notes", &toggle, &[("completed", wanted)])
            .await;
        assert_eq!(sent.status(), StatusCode::SEE_OTHER);
        assert!(!done().await);
    }
    let refused = alice
        .submit("/notes", &toggle, &[("completed", "maybe")])
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let page = alice.page("/notes").await.text().await.unwrap();
    assert!(
        page.contains(r#"name="completed" value="true""#),
        "an open note's button asks for done: {page}"
    );
    let page = alice
        .submit("/notes", &toggle, &[("completed", "true")])
        .await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert!(done().await);
    let toggle = bob
        .submit("/notes", &toggle, &[("completed", "false")])
        .await;
    assert_eq!(toggle.status(), StatusCode::NOT_FOUND);
    assert!(done().await);
    let deleted = alice
        .submit("/notes", &format!("/notes/{note_id}/delete"), &[])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        alice
            .fetch_text("SELECT text FROM notes WHERE text = $1", "alice's secret")
            .await,
        None
    );
}

async fn session_cookie_does_not_authorise_the_json_api(backend: Backend) {
    let app = spawn_app(backend).await;
    app.page_signup("alice").await;
    for origin in [None, Some("https://evil.example")] {
        let mut request = app.client.get(app.url("/users/me/"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

async fn signup_page_shows_the_api_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let short = app
        .submit(
            "/signup",
            "/signup",
            &[("username", "al"), ("password", "short"), ("email", "nope")],
        )
        .await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = short.text().await.unwrap();
    for message in [
        "Username must be at least 3 characters long",
        "Password must be at least 8 characters long",
        "Email address is not valid",
    ] {
        assert!(html.contains(message), "{message}");
    }
    app.page_signup("alice").await;
    let fresh = spawn_app(backend).await;
    let mut other = fresh;
    other.base = app.base.clone();
    let taken = other.page_signup("ALICE").await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert!(
        taken
            .text()
            .await
            .unwrap()
            .contains("Username already registered")
    );
}

#[tokio::test]
async fn https_public_url_uses_secure_host_prefixed_cookies() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.public_url = url::Url::parse("https://auth.example.com/").unwrap();
    })
    .await;
    let login = app.page("/login").await;
    let csrf_cookie = set_cookie(&login, "__Host-gatehouse_csrf").expect("prefixed CSRF cookie");
    assert!(csrf_cookie.contains("Secure"));
    let csrf = csrf_in(&login.text().await.unwrap());
    // reqwest's cookie store will not send a Secure cookie over http; send it by hand.
    let response = app
        .client
        .post(app.url("/signup"))
        .header(
            "cookie",
            format!("__Host-gatehouse_csrf={}", cookie_value(&csrf_cookie)),
        )
        .form(&[
            ("username", "alice"),
            ("password", "correct horse battery"),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie =
        set_cookie(&response, "__Host-gatehouse_session").expect("prefixed session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} has {attribute}");
    }
}

async fn account_page_lists_sessions_ends_them_and_changes_the_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let signed_up = app.page_signup("alice").await;
    let old_cookie = set_cookie(&signed_up, "gatehouse_session").expect("the session cookie");
    let api_token = app.token_for("alice", "correct horse battery").await;
    let html = app.page("/account").await.text().await.unwrap();
    assert!(
        html.contains("this session"),
        "the current session is marked"
    );
    assert!(html.contains("API login"), "the token login is listed");
    assert_eq!(html.matches("class=\"session\"").count(), 2);

    let others = app
        .submit("/account", "/account/sessions/end-others", &[])
        .await;
    assert_eq!(others.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get_me(&api_token).await.status(),
        StatusCode::UNAUTHORIZED,
        "ended at once"
    );
    let html = app.page(location(&others)).await.text().await.unwrap();
    assert!(html.contains("All your other sessions have been ended."));
    assert_eq!(html.matches("class=\"session\"").count(), 1);

    let api_token = app.token_for("alice", "correct horse battery").await;
    let wrong = app
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", "nope"),
                ("new_password", "brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Current password is incorrect")
    );
    // Wrong guesses here count like failed logins; once slowed, the form says so.
    let guess = [
        ("current_password", "nope"),
        ("new_password", "brand new passphrase"),
    ];
    for _ in 1..LoginThrottle::default().free_failures {
        let wrong = app.submit("/account", "/account/password", &guess).await;
        assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    }
    let slowed = app.submit("/account", "/account/password", &guess).await;
    assert_eq!(slowed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(slowed.headers()["retry-after"], "2");
    let html = slowed.text().await.unwrap();
    assert!(html.contains("Too many failed login attempts for this account"));
    assert!(
        html.contains("name=\"current_password\""),
        "the form, not an error page"
    );
    app.clock.advance(chrono::Duration::seconds(3));
    let changed = app
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", "correct horse battery"),
                ("new_password", "brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&changed), "/account?notice=password-changed");
    let new_cookie = set_cookie(&changed, "gatehouse_session").expect("a new session cookie");
    assert_ne!(cookie_value(&new_cookie), cookie_value(&old_cookie));
    assert_eq!(
        app.get_me(&api_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.page("/account").await.status(),
        StatusCode::OK,
        "this browser stays signed in"
    );
    // Whoever held the old cookie is signed out with the other sessions.
    let with_old_cookie = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/account"))
        .header(
            "cookie",
            format!("gatehouse_session={}", cookie_value(&old_cookie)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(with_old_cookie.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.login("alice", "brand new passphrase").await.status(),
        StatusCode::OK
    );
}

/// The emailed reset link's page takes the token out of the address at once: a redirect to
/// the bare page, the token in a cookie of the link's lifetime, so it stays out of the
/// browser's history and of the `Referer` of the page's own requests. The form carries it,
/// and the cookie goes once the password is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_page_takes_the_token_out_of_the_address() {
    let (app, smtp) = crate::email::app_with_smtp(Backend::Sqlite, false).await;
    crate::email::signup_with_email(&app, "alice", "alice@example.com").await;
    let body = serde_json::json!({"username": "alice"});
    crate::email::request_reset(&app, body).await;
    let mail = smtp.expect("alice@example.com", "Reset").await;

    let opened = app
        .page(&mail.link("/reset-password")[app.base.len()..])
        .await;
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&opened), "/reset-password");
    let cookie = set_cookie(&opened, "gatehouse_reset").expect("the token's cookie");
    assert_eq!(cookie_value(&cookie), mail.token("/reset-password"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Max-Age=1800"),
        "{cookie}"
    );
    let page = app.page("/reset-password").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let field = format!("name=\"token\" value=\"{}\"", mail.token("/reset-password"));
    assert!(html.contains(&field), "{html}");

    let fields = [
        ("token", mail.token("/reset-password")),
        ("new_password", "a brand new passphrase".to_string()),
    ];
    let fields: Vec<_> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = app
        .submit("/reset-password", "/reset-password", &fields)
        .await;
    assert_eq!(location(&done), "/login?notice=password-reset");
    let cleared = set_cookie(&done, "gatehouse_reset").expect("the cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let login = app.login("alice", "a brand new passphrase").await;
    assert_eq!(login.status(), StatusCode::OK);
}

/// The reset page states the configured password rules and names the account for password
/// managers; a refused password keeps the form and says why; a used link's page offers a new
/// link instead of a form that could never succeed, and drops the link's cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_page_states_the_rules_and_a_used_link_offers_a_new_one() {
    let smtp = crate::mail::SmtpSink::start();
    let url = smtp.url.clone();
    let app = spawn_app_with(Backend::Sqlite, move |config| {
        config.mail.smtp_url = Some(url);
        config.abuse.password_policy.min_chars = 12;
    })
    .await;
    crate::email::signup_with_email(&app, "alice", "alice@example.com").await;
    crate::email::request_reset(&app, serde_json::json!({"username": "alice"})).await;
    let mail = smtp.expect("alice@example.com", "Reset").await;
    let (link, token) = (mail.link("/reset-password"), mail.token("/reset-password"));

    let page = crate::email::open_link(&app, &link).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"minlength="12""#), "{html}");
    assert!(html.contains("12 to 128 characters"), "{html}");
    assert!(html.contains(r#"name="username" value="alice""#), "{html}");

    let submit = async |password: &str| {
        let fields = [("token", token.as_str()), ("new_password", password)];
        app.submit("/reset-password", "/reset-password", &fields)
            .await
    };
    let short = submit("eleven char").await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = short.text().await.unwrap();
    assert!(html.contains("at least 12 characters"), "{html}");
    assert!(html.contains(r#"name="new_password""#), "{html}");
    let done = submit("a brand new passphrase").await;
    assert_eq!(location(&done), "/login?notice=password-reset");

    let used = crate::email::open_link(&app, &link).await;
    assert_eq!(used.status(), StatusCode::BAD_REQUEST);
    let cleared = set_cookie(&used, "gatehouse_reset").expect("the cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let html = used.text().await.unwrap();
    assert!(html.contains("invalid or has expired"), "{html}");
    assert!(html.contains(r#"href="/forgot-password""#), "{html}");
    assert!(!html.contains(r#"name="new_password""#), "{html}");
}

/// The account page's email change: a wrong current password is said beside the form, which
/// keeps the address typed; the right one sends the link to the new address and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_changes_the_email_and_keeps_a_refused_address() {
    let (app, smtp) = crate::email::app_with_smtp(Backend::Sqlite, false).await;
    assert_eq!(
        app.page_signup("alice").await.status(),
        StatusCode::SEE_OTHER
    );
    let change = async |password: &str| {
        let fields = [
            ("email", "alice@example.com"),
            ("current_password", password),
        ];
        app.submit("/account", "/account/email", &fields).await
    };

    let refused = change("not my password").await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let html = refused.text().await.unwrap();
    assert!(html.contains("Current password is incorrect"), "{html}");
    assert!(
        html.contains(
            r#"value="alice@example.com" aria-invalid="true" aria-describedby="email-error""#
        ),
        "{html}"
    );

    let sent = change("correct horse battery").await;
    assert_eq!(location(&sent), "/account?notice=email-change-sent");
    smtp.expect("alice@example.com", "Confirm").await;
    let html = app
        .page("/account?notice=email-change-sent")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("We have sent a confirmation link"), "{html}");
}

/// The right password of a disabled account gets the form back with what to do, where the
/// API keeps the tutorial's "Inactive user".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_told_on_the_login_form() {
    let app = spawn_app(Backend::Sqlite).await;
    assert_eq!(
        app.signup("alice", "correct horse battery").await.status(),
        StatusCode::OK
    );
    let id = app.user_id("alice").await;
    let now = app.clock_now();
    let store = app.state.store.as_ref();
    store.set_user_disabled(id, true, now).await.unwrap();

    let refused = app.page_login("alice", &[]).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(set_cookie(&refused, "gatehouse_session"), None);
    let html = refused.text().await.unwrap();
    assert!(html.contains("This account has been disabled."), "{html}");
    assert!(html.contains(r#"value="alice""#), "{html}");
    let api = app.login("alice", "correct horse battery").await;
    crate::helpers::assert_detail(api, StatusCode::BAD_REQUEST, "Inactive user").await;
}

/// The sign-up form asks for an address when accounts must confirm one
/// (`REQUIRE_EMAIL_VERIFICATION`), and calls it optional only when it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signup_form_requires_an_address_only_when_accounts_must_confirm_one() {
    for required in [false, true] {
        let app = spawn_app_with(Backend::Sqlite, |config| {
            config.mail.require_verification = required;
        })
        .await;
        let html = app.page("/signup").await.text().await.unwrap();
        let label = html
            .split("<label for=\"email\">")
            .nth(1)
            .and_then(|rest| rest.split("</label>").next())
            .expect("the email field's label");
        assert_eq!(label.contains("(optional)"), !required, "{label}");
        let input = html
            .split("<input id=\"email\"")
            .nth(1)
            .and_then(|rest| rest.split('>').next())
            .expect("the email field");
        assert_eq!(input.contains(" required"), required, "{input}");
    }
}

/// A sign-up on the page whose session cannot start (a trigger plays the database being away
/// as the session is written) sends the new user to the login form with a notice, not to an
/// error page whose retry would say the name is taken; the login then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sign_up_whose_session_cannot_start_sends_the_user_to_log_in() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    app.postgres_away_on("INSERT", "sessions").await;
    let created = app.page_signup("alice").await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&created), "/login?notice=account-created");
    assert_eq!(set_cookie(&created, "gatehouse_session"), None);
    let page = app.page("/login?notice=account-created").await;
    let html = page.text().await.unwrap();
    assert!(html.contains("Your account has been created."), "{html}");

    app.execute_sql("DROP TRIGGER away ON sessions").await;
    let login = app.page_login("alice", &[]).await;
    assert_eq!(location(&login), "/account");
}

/// Over https the cookies carry the `__Host-` prefix, and a browser ignores any such cookie
/// without `Secure`, its removal included: logging out clears the session cookie with
/// `Secure`, or the browser would keep sending it. (The client here speaks plain HTTP to the
/// service, which only believes it is behind https; it sends the cookies by hand.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_log_out_clears_the_host_cookie_with_secure() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.public_url = "https://127.0.0.1:0/".parse().unwrap();
    })
    .await;
    assert_eq!(
        app.signup("alice", "correct horse battery").await.status(),
        StatusCode::OK
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut cookies: Vec<String> = Vec::new();
    // Posts the form of the page `from` to `action`, keeping the cookies the page sets.
    let post =
        async |(from, action): (&str, &str), cookies: &mut Vec<String>, fields: &[(&str, &str)]| {
            let page = client
                .get(app.url(from))
                .header("cookie", cookies.join("; "));
            let page = page.send().await.unwrap();
            cookies.extend(
                page.headers()
                    .get_all(SET_COOKIE)
                    .iter()
                    .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string()),
            );
            let csrf = csrf_in(&page.text().await.unwrap());
            let mut form = fields.to_vec();
            form.push(("csrf_token", &csrf));
            client
                .post(app.url(action))
                .header("origin", &app.base)
                .header("cookie", cookies.join("; "))
                .form(&form)
                .send()
                .await
                .unwrap()
        };
    let fields = [("username", "alice"), ("password", "correct horse battery")];
    let signed_in = post(("/login", "/login"), &mut cookies, &fields).await;
    assert_eq!(location(&signed_in), "/account");
    let session = set_cookie(&signed_in, "__Host-gatehouse_session").expect("a session cookie");
    assert!(session.contains("Secure"), "{session}");
    cookies.push(format!(
        "__Host-gatehouse_session={}",
        cookie_value(&session)
    ));

    let signed_out = post(("/account", "/account/logout"), &mut cookies, &[]).await;
    assert_eq!(location(&signed_out), "/login?notice=signed-out");
    let cleared = set_cookie(&signed_out, "__Host-gatehouse_session").expect("a removal");
    for part in ["Max-Age=0", "Path=/", "Secure"] {
        assert!(cleared.contains(part), "{part} in {cleared}");
    }
}
