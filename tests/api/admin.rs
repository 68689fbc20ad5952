//! The admin API (`/admin/users...`) and console (`/admin`, `/admin/people/...`): superusers
//! find and act on users, everything lands in the audit trail with its actor, and everyone
//! else is refused. Also: users deleting their own account from the account page.

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, TestDb, assert_detail, csrf_in, fresh_postgres_database, spawn_app,
    spawn_app_on, wait_for,
};

both_backends!(
    ordinary_users_are_refused_everywhere,
    superusers_find_users_and_see_their_sessions_and_events,
    admin_actions_take_effect_and_are_audited_with_their_actor,
    superusers_cannot_lock_themselves_out,
    the_console_lists_searches_and_acts_with_csrf_protected_forms,
    users_delete_their_own_account_with_their_password,
);

const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// Signs `username` up, makes them a superuser, and returns their id and token.
    pub(crate) async fn superuser(&self, username: &str) -> (i64, String) {
        let token = self.signup_and_login(username).await;
        let id = self.user_id(username).await;
        assert!(
            self.state
                .store
                .set_superuser(id, true, Utc::now())
                .await
                .unwrap()
        );
        (id, token)
    }

    async fn admin_post(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn html(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(self.url(path))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Signs in through the login page, so the client holds a session cookie.
    async fn page_sign_in(&self, username: &str) {
        let (_, html) = self.html("/login").await;
        let response = self
            .client
            .post(self.url("/login"))
            .header("origin", &self.base)
            .form(&[
                ("username", username),
                ("password", PASSWORD),
                ("csrf_token", &csrf_in(&html)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "login of {username}"
        );
    }

    /// Posts a page form with the CSRF token found on `from`.
    async fn page_post(
        &self,
        from: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let (_, html) = self.html(from).await;
        let csrf = csrf_in(&html);
        let mut form = fields.to_vec();
        form.push(("csrf_token", &csrf));
        self.client
            .post(self.url(action))
            .header("origin", &self.base)
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

async fn ordinary_users_are_refused_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("mallory").await;
    let victim = app.signup_and_login("victim").await;
    let id = app.user_id("victim").await;
    let refused = "Not enough permissions";
    for path in ["/admin/users", &format!("/admin/users/{id}")] {
        assert_detail(
            app.get_auth(path, &token).await,
            StatusCode::FORBIDDEN,
            refused,
        )
        .await;
        let anonymous = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    }
    for action in ["disable", "enable", "promote", "demote", "end-sessions"] {
        let response = app
            .admin_post(&format!("/admin/users/{id}/{action}"), &token)
            .await;
        assert_detail(response, StatusCode::FORBIDDEN, refused).await;
    }
    let delete = app
        .client
        .delete(app.url(&format!("/admin/users/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_detail(delete, StatusCode::FORBIDDEN, refused).await;
    assert_eq!(
        app.get_me(&victim).await.status(),
        StatusCode::OK,
        "untouched"
    );
    let promote = app
        .admin_post(
            &format!("/admin/users/{}/promote", app.user_id("mallory").await),
            &token,
        )
        .await;
    assert_eq!(
        promote.status(),
        StatusCode::FORBIDDEN,
        "not even themselves"
    );

    // Pages: /admin shows the name and a link to the account, nothing of the console.
    app.page_sign_in("mallory").await;
    let (status, html) = app.html("/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"admin-username\">mallory<"), "{html}");
    assert!(html.contains("href=\"/account\""));
    assert!(
        !html.contains("victim") && !html.contains("users-table"),
        "{html}"
    );
    let (status, html) = app.html(&format!("/admin/people/{id}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!html.contains("victim"));
    let (status, _) = app.html(&format!("/admin/people/{id}/delete")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let response = app
        .page_post("/account", &format!("/admin/people/{id}/disable"), &[])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get_me(&victim).await.status(),
        StatusCode::OK,
        "still active"
    );
}

async fn superusers_find_users_and_see_their_sessions_and_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.superuser("root").await;
    for name in ["alice", "alina", "bob"] {
        app.signup_and_login(name).await;
    }
    let list = app.get_auth("/admin/users?q=ALI", &admin).await;
    assert_eq!(list.status(), StatusCode::OK);
    let body = app.documented_json("GET", "/admin/users", list).await;
    let names: Vec<&str> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "alina"]);
    assert_eq!(body["total"], 2);

    let first = app.get_auth("/admin/users?per_page=3", &admin).await;
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["total"], 4);
    assert_eq!(first["users"].as_array().unwrap().len(), 3);
    assert_eq!(first["users"][0]["username"], "root");
    assert_eq!(first["users"][0]["is_superuser"], true);
    let second: Value = app
        .get_auth("/admin/users?per_page=3&page=2", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["users"][0]["username"], "bob");
    assert_eq!(second["page"], 2);
    let wildcard: Value = app
        .get_auth("/admin/users?q=%25", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        wildcard["total"], 0,
        "a % in the query is a character, not a wildcard"
    );
    let bad = app.get_auth("/admin/users?page=0", &admin).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A search longer than any address: refused by name, not a 500 (SQLite refuses a LIKE
    // pattern over 50,000 bytes).
    let longest = "a".repeat(254);
    let found = app
        .get_auth(&format!("/admin/users?q={longest}"), &admin)
        .await;
    assert_eq!(found.status(), StatusCode::OK);
    let long = app
        .get_auth(&format!("/admin/users?q={}", "_".repeat(60_000)), &admin)
        .await;
    assert_eq!(long.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = long.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        serde_json::json!(["query", "q"]),
        "{body}"
    );

    let id = app.user_id("bob").await;
    let response = app.get_auth(&format!("/admin/users/{id}"), &admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    let detail = app
        .documented_json("GET", "/admin/users/{id}", response)
        .await;
    assert_eq!(detail["user"]["username"], "bob");
    assert_eq!(detail["sessions"].as_array().unwrap().len(), 1, "{detail}");
    assert!(
        detail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "signup"),
        "{detail}"
    );
    let missing = app.get_auth("/admin/users/999999", &admin).await;
    assert_detail(missing, StatusCode::NOT_FOUND, "Not Found").await;
}

async fn admin_actions_take_effect_and_are_audited_with_their_actor(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin_id, admin) = app.superuser("root").await;
    let bob = app.signup_and_login("bob").await;
    let id = app.user_id("bob").await;
    let notes = app
        .post_auth(
            "/notes/",
            &bob,
            &serde_json::json!({"text": "bob's note", "completed": false}),
        )
        .await;
    assert_eq!(notes.status(), StatusCode::OK);

    let response = app
        .admin_post(&format!("/admin/users/{id}/disable"), &admin)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = app
        .documented_json("POST", "/admin/users/{id}/disable", response)
        .await;
    assert_eq!(body["user"]["disabled"], true);
    assert_eq!(body["sessions_ended"], 1);
    assert_eq!(
        app.get_me(&bob).await.status(),
        StatusCode::UNAUTHORIZED,
        "session ended"
    );
    assert_detail(
        app.login("bob", PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "Inactive user",
    )
    .await;

    let enabled = app
        .admin_post(&format!("/admin/users/{id}/enable"), &admin)
        .await;
    assert_eq!(enabled.status(), StatusCode::OK);
    let bob = app.token_for("bob", PASSWORD).await;

    let promoted: Value = app
        .admin_post(&format!("/admin/users/{id}/promote"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["user"]["is_superuser"], true);
    assert_eq!(
        app.get_auth("/admin/users", &bob).await.status(),
        StatusCode::OK
    );
    let demoted = app
        .admin_post(&format!("/admin/users/{id}/demote"), &admin)
        .await;
    assert_eq!(demoted.status(), StatusCode::OK);
    assert_eq!(
        app.get_auth("/admin/users", &bob).await.status(),
        StatusCode::FORBIDDEN
    );

    let ended: Value = app
        .admin_post(&format!("/admin/users/{id}/end-sessions"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ended["sessions_ended"], 1);
    assert_eq!(ended["user"]["disabled"], false);
    assert_eq!(app.get_me(&bob).await.status(), StatusCode::UNAUTHORIZED);

    let actions = app
        .count(
            "SELECT COUNT(*) FROM events WHERE kind = 'admin_action' AND actor_id = \
             (SELECT id FROM users WHERE username = $1)",
            "root",
        )
        .await;
    assert_eq!(actions, 5, "disable, enable, promote, demote, end sessions");

    let deleted = app
        .client
        .delete(app.url(&format!("/admin/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE username = $1", "bob")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM notes WHERE text = $1", "bob's note")
            .await,
        0
    );
    let kept = app
        .count(
            "SELECT COUNT(*) FROM events WHERE kind = $1 AND user_id IS NULL",
            "signup",
        )
        .await;
    assert_eq!(kept, 1, "bob's events stay, without him");
    let detail = app
        .fetch_text(
            "SELECT detail FROM events WHERE kind = 'admin_action' AND detail LIKE $1",
            "deleted user bob%",
        )
        .await;
    assert!(detail.is_some(), "the deletion is recorded");
    let actor = app
        .fetch_text(
            "SELECT CAST(actor_id AS TEXT) FROM events WHERE detail LIKE $1",
            "deleted user bob%",
        )
        .await;
    assert_eq!(actor, Some(admin_id.to_string()));
    let again = app
        .admin_post(&format!("/admin/users/{id}/disable"), &admin)
        .await;
    assert_detail(again, StatusCode::NOT_FOUND, "Not Found").await;
}

async fn superusers_cannot_lock_themselves_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, admin) = app.superuser("root").await;
    for action in ["disable", "demote"] {
        let response = app
            .admin_post(&format!("/admin/users/{id}/{action}"), &admin)
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{action}");
    }
    let delete = app
        .client
        .delete(app.url(&format!("/admin/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get_auth("/admin/users", &admin).await.status(),
        StatusCode::OK
    );

    // The console's page of their own account offers none of these, and says why.
    app.page_sign_in("root").await;
    let (_, html) = app.html(&format!("/admin/people/{id}")).await;
    assert!(
        html.contains("id=\"own-account\"") && html.contains("id=\"end-sessions\""),
        "{html}"
    );
    for refused in ["id=\"disable\"", "id=\"demote\"", "id=\"delete\""] {
        assert!(!html.contains(refused), "{refused}: {html}");
    }

    // Nor from the account page: it offers no deletion, and refuses one posted anyway.
    let (_, html) = app.html("/account").await;
    assert!(
        html.contains("id=\"delete-superuser\"") && !html.contains("action=\"/account/delete\""),
        "{html}"
    );
    let refused = app
        .page_post("/account", "/account/delete", &[("password", PASSWORD)])
        .await;
    assert_eq!(
        refused.headers()[LOCATION],
        "/account?notice=delete-superuser"
    );
    let (_, html) = app.html("/account?notice=delete-superuser").await;
    assert!(html.contains("your account has not been deleted"), "{html}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE username = $1", "root")
            .await,
        1
    );
}

async fn the_console_lists_searches_and_acts_with_csrf_protected_forms(backend: Backend) {
    let app = spawn_app(backend).await;
    app.superuser("root").await;
    let bob = app.signup_and_login("bob").await;
    app.signup_and_login("carol").await;
    let id = app.user_id("bob").await;
    app.page_sign_in("root").await;

    let (status, html) = app.html("/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("users-table") && html.contains("carol") && html.contains("bob"));
    let (_, html) = app.html("/admin?q=bo").await;
    assert!(
        html.contains(&format!("/admin/people/{id}")) && !html.contains("carol"),
        "{html}"
    );
    // The page links keep the page size; past the last page, "Previous" goes to the last.
    let (_, html) = app.html("/admin?per_page=1&page=2").await;
    assert!(
        html.contains(r#"href="/admin?q=&#38;page=3&#38;per_page=1" id="next-page""#),
        "{html}"
    );
    assert!(
        html.contains(r#"href="/admin?q=&#38;page=1&#38;per_page=1" id="previous-page""#),
        "{html}"
    );
    let (_, html) = app.html("/admin?per_page=1&page=9").await;
    assert!(
        html.contains(r#"href="/admin?q=&#38;page=3&#38;per_page=1" id="previous-page""#),
        "{html}"
    );
    assert!(!html.contains("next-page"), "{html}");
    let (status, html) = app.html(&format!("/admin/people/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("API login"),
        "bob's session is listed: {html}"
    );

    let forged = app
        .client
        .post(app.url(&format!("/admin/people/{id}/disable")))
        .header("origin", &app.base)
        .form(&[("csrf_token", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get_me(&bob).await.status(), StatusCode::OK);

    let page = format!("/admin/people/{id}");
    let disabled = app
        .page_post(&page, &format!("/admin/people/{id}/disable"), &[])
        .await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        disabled.headers()[LOCATION],
        format!("/admin/people/{id}?notice=disabled").as_str()
    );
    assert_eq!(app.get_me(&bob).await.status(), StatusCode::UNAUTHORIZED);
    let (_, html) = app
        .html(&format!("/admin/people/{id}?notice=disabled"))
        .await;
    assert!(html.contains("has been disabled") && html.contains("id=\"enable\""));

    let (status, html) = app.html(&format!("/admin/people/{id}/delete")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("cannot be undone"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE username = $1", "bob")
            .await,
        1,
        "asking deletes nothing"
    );
    let deleted = app
        .page_post(
            &format!("/admin/people/{id}/delete"),
            &format!("/admin/people/{id}/delete"),
            &[],
        )
        .await;
    assert_eq!(deleted.headers()[LOCATION], "/admin?notice=deleted");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE username = $1", "bob")
            .await,
        0
    );
    let (status, _) = app.html(&format!("/admin/people/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn users_delete_their_own_account_with_their_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    let note = app
        .post_auth(
            "/notes/",
            &token,
            &serde_json::json!({"text": "alice's note", "completed": false}),
        )
        .await;
    assert_eq!(note.status(), StatusCode::OK);
    app.page_sign_in("alice").await;
    let (_, html) = app.html("/account").await;
    assert!(html.contains("action=\"/account/delete\""));

    let refused = app
        .page_post(
            "/account",
            "/account/delete",
            &[("password", "not the password")],
        )
        .await;
    assert_eq!(
        refused.headers()[LOCATION],
        "/account?notice=delete-refused"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE username = $1", "alice")
            .await,
        1
    );

    let deleted = app
        .page_post("/account", "/account/delete", &[("password", PASSWORD)])
        .await;
    assert_eq!(deleted.headers()[LOCATION], "/login?notice=account-deleted");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE username = $1", "alice")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM notes WHERE text = $1", "alice's note")
            .await,
        0
    );
    assert_eq!(
        app.get_me(&token).await.status(),
        StatusCode::UNAUTHORIZED,
        "tokens go too"
    );
    let events = app
        .count(
            "SELECT COUNT(*) FROM events WHERE user_id IS NULL AND kind <> $1",
            "account_deleted",
        )
        .await;
    assert!(events >= 1, "alice's events stay, without her");
    let (_, html) = app.html("/login?notice=account-deleted").await;
    assert!(html.contains("Your account has been deleted."));
}

/// How many times the search's trigram indexes have been read (PostgreSQL's statistics: a
/// backend that reported less than a second ago holds new counts until it has been idle for
/// ten seconds).
async fn trigram_index_scans(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(idx_scan), 0)::BIGINT FROM pg_stat_user_indexes \
         WHERE indexrelname LIKE 'users\\_%\\_trgm\\_idx'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// On PostgreSQL a search can be answered from the trigram indexes (migration 0008): their
/// expressions are the search's, which nothing else checks. With 20,000 users the
/// planner still prefers reading them all (it turns to the indexes somewhere below 1,000,000,
/// where a search took 2 s without them), so this database forbids that where it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_search_reads_the_trigram_indexes() {
    if !Backend::postgres_available() {
        return;
    }
    let (url, db) = fresh_postgres_database("gatehouse_test").await;
    let TestDb::Postgres { pool, name, .. } = &db else {
        unreachable!()
    };
    let sql = format!("ALTER DATABASE {name} SET enable_seqscan = off");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
    let app = spawn_app_on(url, db).await;
    let (_, admin) = app.superuser("root").await;
    let TestDb::Postgres { pool, .. } = &app.db else {
        unreachable!()
    };
    sqlx::query(
        "INSERT INTO users (username, username_key, email, full_name, hashed_password, \
         created_at, updated_at) \
         SELECT 'u' || i, 'u' || i, 'u' || i || '@Example.com', 'User ' || i, 'x', now(), now() \
         FROM generate_series(1, 20000) AS i",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE users").execute(pool).await.unwrap();
    let before = trigram_index_scans(pool).await;

    let found: Value = app
        .get_auth("/admin/users?q=U1234%40", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["users"][0]["email"], "u1234@Example.com");

    let read = async || trigram_index_scans(pool).await > before;
    wait_for(
        "the search reads the trigram indexes",
        std::time::Duration::from_secs(30),
        read,
    )
    .await;
}

/// A role that may create tables but not install an extension (no `CREATE` on the database)
/// still gets a service that starts and searches, without the trigram indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_role_that_cannot_install_extensions_still_searches() {
    if !Backend::postgres_available() {
        return;
    }
    let (url, db) = fresh_postgres_database("gatehouse_test").await;
    let TestDb::Postgres { pool, name, .. } = &db else {
        unreachable!()
    };
    let role = format!("gatehouse_limited_{}", uuid::Uuid::new_v4().simple());
    for sql in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT CONNECT ON DATABASE {name} TO {role}"),
        format!("GRANT CREATE, USAGE ON SCHEMA public TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
    let mut limited = url::Url::parse(&url).unwrap();
    limited.set_username(&role).unwrap();
    let app = spawn_app_on(limited.into(), db).await;
    let (_, admin) = app.superuser("root").await;
    app.signup_and_login("alice").await;
    let found: Value = app
        .get_auth("/admin/users?q=lic", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 1, "{found}");
    let TestDb::Postgres { pool, .. } = &app.db else {
        unreachable!()
    };
    let installed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        !installed,
        "the role was not meant to be able to install it"
    );
    // The role owns the app's tables until its database is gone.
    drop(app);
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(&admin)
        .await
        .unwrap();
}
