//! Each instance keeps live sessions in memory, yet a revocation made anywhere (another
//! instance, the command line, plain SQL) is refused on the next request everywhere. SQLite
//! instances see it at once (they check the database's WAL index at every lookup); PostgreSQL
//! instances as soon as the database delivers the change notification, so for another
//! PostgreSQL instance these tests allow that delivery a moment.

use std::time::Duration;

use gatehouse::auth::sessions::{ClientMeta, start_browser_session};
use gatehouse::clock::Clock;
use gatehouse::server::Server;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, TestDb, fresh_postgres_database, spawn_app, spawn_app_on, spawn_app_with,
};

both_backends!(
    revocations_are_refused_at_once_on_every_instance,
    changes_made_in_sql_are_seen_by_every_instance,
    a_revoked_browser_session_is_refused_on_every_instance,
    a_cache_of_zero_entries_reads_every_session_from_the_database,
    logins_on_two_instances_that_both_upgrade_a_hash_both_sign_in,
    a_password_change_beside_a_login_upgrading_the_hash_goes_through,
    a_login_whose_hash_another_instance_upgraded_first_signs_in,
    a_password_change_whose_hash_another_instance_upgraded_first_goes_through,
);

const PASSWORD: &str = "correct horse battery";

/// A second instance of the service on the test app's database.
struct Peer {
    base: String,
    client: reqwest::Client,
    backend: Backend,
}

impl Peer {
    /// Requests to an instance already running at `base`.
    fn at(base: &str, backend: Backend) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            base: base.to_string(),
            client,
            backend,
        }
    }

    async fn start(app: &TestApp, backend: Backend) -> Self {
        let mut config = app.state.config.as_ref().clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = Server::build_with_clock(config, app.clock.clone())
            .await
            .expect("the second instance starts");
        let base = format!("http://{}", server.local_addr());
        tokio::spawn(server.run(std::future::pending()));
        Self::at(&base, backend)
    }

    async fn status(&self, path: &str, auth: Auth<'_>) -> StatusCode {
        let request = self.client.get(format!("{}{path}", self.base));
        let request = match auth {
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Cookie(value) => request.header("cookie", format!("gatehouse_session={value}")),
        };
        request.send().await.unwrap().status()
    }

    /// Signed-in requests this instance has answered from memory.
    async fn cache_hits(&self) -> u64 {
        let url = format!("{}/metrics", self.base);
        let text = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("gatehouse_session_cache_hits_total "))
            .expect("the cache's hit counter")
            .parse()
            .unwrap()
    }

    /// Requests `path` until the instance answers it from memory. A PostgreSQL instance
    /// trusts its cache once subscribed to the change feed, a moment after it starts.
    async fn serves_from_memory(&self, path: &str, auth: Auth<'_>) {
        for _ in 0..40 {
            let before = self.cache_hits().await;
            assert_eq!(self.status(path, auth).await, StatusCode::OK);
            if self.cache_hits().await > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never answered {path} from memory", self.base);
    }

    /// What this instance answers once the change has reached it: SQLite, on the first
    /// request; PostgreSQL, within two seconds (the notification's delivery).
    async fn settles_on(&self, path: &str, auth: Auth<'_>, expected: StatusCode) {
        let attempts = match self.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 40,
        };
        let mut last = StatusCode::OK;
        for _ in 0..attempts {
            last = self.status(path, auth).await;
            if last == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path}: the other instance still answers {last}, not {expected}");
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
}

/// Uses the session on both instances until both answer it from memory.
async fn warm(app: &TestApp, peer: &Peer, token: &str) {
    for instance in [
        Peer::at(&app.base, peer.backend),
        Peer::at(&peer.base, peer.backend),
    ] {
        instance
            .serves_from_memory("/users/me/", Auth::Bearer(token))
            .await;
    }
}

async fn pair(app: &TestApp, username: &str) -> (String, String) {
    let response = app.login(username, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let field = |name: &str| body[name].as_str().unwrap().to_string();
    (field("access_token"), field("refresh_token"))
}

/// Ends every session of the token's user but its own, through the API.
async fn end_other_sessions(app: &TestApp, token: &str) {
    let response = app
        .client
        .delete(app.url("/users/me/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

/// Every way a session ends, each after both instances hold the session in memory: the
/// instance that made the change refuses it on the next request, the other one too.
async fn revocations_are_refused_at_once_on_every_instance(backend: Backend) {
    let app = spawn_app(backend).await;
    let peer = Peer::start(&app, backend).await;
    app.signup("alice", PASSWORD).await;
    let me = "/users/me/";

    // Logout.
    let (access, _) = pair(&app, "alice").await;
    warm(&app, &peer, &access).await;
    let logout = app.post_auth("/logout", &access, &json!({})).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_me(&access).await.status(), StatusCode::UNAUTHORIZED);
    peer.settles_on(me, Auth::Bearer(&access), StatusCode::UNAUTHORIZED)
        .await;

    // One session ended from another, then all others at once.
    let (keeper, _) = pair(&app, "alice").await;
    let (ended, _) = pair(&app, "alice").await;
    let (other, _) = pair(&app, "alice").await;
    for token in [&keeper, &ended, &other] {
        warm(&app, &peer, token).await;
    }
    let sessions: Value = app
        .get_auth("/users/me/sessions", &keeper)
        .await
        .json()
        .await
        .unwrap();
    let ended_id = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["current"] != json!(true))
        .map(|s| s["id"].as_i64().unwrap())
        .min()
        .unwrap();
    let deleted = app
        .client
        .delete(app.url(&format!("/users/me/sessions/{ended_id}")))
        .bearer_auth(&keeper)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_me(&ended).await.status(), StatusCode::UNAUTHORIZED);
    peer.settles_on(me, Auth::Bearer(&ended), StatusCode::UNAUTHORIZED)
        .await;
    end_other_sessions(&app, &keeper).await;
    assert_eq!(app.get_me(&other).await.status(), StatusCode::UNAUTHORIZED);
    peer.settles_on(me, Auth::Bearer(&other), StatusCode::UNAUTHORIZED)
        .await;
    assert_eq!(app.get_me(&keeper).await.status(), StatusCode::OK);

    // A refresh token used twice ends its family.
    let (access, refresh) = pair(&app, "alice").await;
    warm(&app, &peer, &access).await;
    for expected in [StatusCode::OK, StatusCode::BAD_REQUEST] {
        let response = app
            .client
            .post(app.url("/token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
    }
    assert_eq!(app.get_me(&access).await.status(), StatusCode::UNAUTHORIZED);
    peer.settles_on(me, Auth::Bearer(&access), StatusCode::UNAUTHORIZED)
        .await;

    // Superuser rights withdrawn: the cached user must not keep them.
    let alice = app.user_id("alice").await;
    let store = app.state.store.as_ref();
    let now = app.clock.now();
    store.set_superuser(alice, true, now).await.unwrap();
    let (access, _) = pair(&app, "alice").await;
    warm(&app, &peer, &access).await;
    assert_eq!(
        peer.status("/admin/users", Auth::Bearer(&access)).await,
        StatusCode::OK
    );
    store.set_superuser(alice, false, now).await.unwrap();
    assert_eq!(
        app.get_auth("/admin/users", &access).await.status(),
        StatusCode::FORBIDDEN
    );
    peer.settles_on("/admin/users", Auth::Bearer(&access), StatusCode::FORBIDDEN)
        .await;

    // Disabled: every session of the user ends.
    store.set_user_disabled(alice, true, now).await.unwrap();
    assert_eq!(app.get_me(&access).await.status(), StatusCode::UNAUTHORIZED);
    peer.settles_on(me, Auth::Bearer(&access), StatusCode::UNAUTHORIZED)
        .await;
}

/// Writes that bypass the service altogether: an operator's SQL.
async fn changes_made_in_sql_are_seen_by_every_instance(backend: Backend) {
    let app = spawn_app(backend).await;
    let peer = Peer::start(&app, backend).await;
    app.signup("alice", PASSWORD).await;
    let (access, _) = pair(&app, "alice").await;
    warm(&app, &peer, &access).await;

    app.execute(
        "UPDATE users SET disabled = TRUE WHERE username = $1",
        "alice",
    )
    .await;
    everywhere_settles_on(&app, &peer, &access, StatusCode::BAD_REQUEST).await;

    app.execute(
        "UPDATE users SET disabled = FALSE WHERE username = $1",
        "alice",
    )
    .await;
    // The other instance may answer from its copy of the disabled user until the change
    // reaches it; only then is there an enabled user to keep in memory.
    everywhere_settles_on(&app, &peer, &access, StatusCode::OK).await;
    warm(&app, &peer, &access).await;
    app.execute(
        "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = $1)",
        "alice",
    )
    .await;
    everywhere_settles_on(&app, &peer, &access, StatusCode::UNAUTHORIZED).await;
}

/// What both instances answer for `/users/me/` once the change has reached them.
async fn everywhere_settles_on(app: &TestApp, peer: &Peer, token: &str, expected: StatusCode) {
    for instance in [
        Peer::at(&app.base, peer.backend),
        Peer::at(&peer.base, peer.backend),
    ] {
        instance
            .settles_on("/users/me/", Auth::Bearer(token), expected)
            .await;
    }
}

/// The cookie path: a browser session held in memory by both instances, then ended.
async fn a_revoked_browser_session_is_refused_on_every_instance(backend: Backend) {
    let app = spawn_app(backend).await;
    let peer = Peer::start(&app, backend).await;
    app.signup("alice", PASSWORD).await;
    let store = app.state.store.as_ref();
    let account = store.credentials_by_key("alice").await.unwrap().unwrap();
    let user_id = account.user.id;
    let (cookie, _) = start_browser_session(
        store,
        &app.state.config.sessions,
        app.clock.now(),
        &account.into(),
        false,
        ClientMeta::default(),
        None,
    )
    .await
    .unwrap();
    let home = Peer::at(&app.base, backend);
    for instance in [&home, &peer] {
        instance
            .serves_from_memory("/account", Auth::Cookie(&cookie))
            .await;
    }

    store.delete_other_sessions(user_id, None).await.unwrap();
    assert_eq!(
        home.status("/account", Auth::Cookie(&cookie)).await,
        StatusCode::SEE_OTHER,
        "sent to the login page"
    );
    peer.settles_on("/account", Auth::Cookie(&cookie), StatusCode::SEE_OTHER)
        .await;
}

/// The instance that makes a change must not depend on hearing it back: with the triggers
/// gone (no notifications at all), its own revocations still take effect on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instance_forgets_its_own_writes_without_notifications() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    for trigger in [
        "DROP TRIGGER sessions_deleted ON sessions",
        "DROP TRIGGER sessions_changed ON sessions",
        "DROP TRIGGER users_changed ON users",
    ] {
        app.execute_sql(trigger).await;
    }
    app.signup("alice", PASSWORD).await;
    let here = Peer::at(&app.base, Backend::Postgres);
    let warm_here = |token: String| async {
        here.serves_from_memory("/users/me/", Auth::Bearer(&token))
            .await;
        token
    };

    let access = warm_here(pair(&app, "alice").await.0).await;
    let logout = app.post_auth("/logout", &access, &json!({})).await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_me(&access).await.status(), StatusCode::UNAUTHORIZED);

    let keeper = warm_here(pair(&app, "alice").await.0).await;
    let other = warm_here(pair(&app, "alice").await.0).await;
    end_other_sessions(&app, &keeper).await;
    assert_eq!(app.get_me(&other).await.status(), StatusCode::UNAUTHORIZED);

    let alice = app.user_id("alice").await;
    let store = app.state.store.as_ref();
    let now = app.clock.now();
    store.set_superuser(alice, true, now).await.unwrap();
    let admin = warm_here(pair(&app, "alice").await.0).await;
    assert_eq!(
        app.get_auth("/admin/users", &admin).await.status(),
        StatusCode::OK
    );
    store.set_superuser(alice, false, now).await.unwrap();
    assert_eq!(
        app.get_auth("/admin/users", &admin).await.status(),
        StatusCode::FORBIDDEN
    );
    store.set_user_disabled(alice, true, now).await.unwrap();
    assert_eq!(app.get_me(&admin).await.status(), StatusCode::UNAUTHORIZED);
}

/// A listening connection that never delivers (through a pooler in transaction mode, say;
/// played here by a `pg_notify` that does nothing) never gets the cache trusted: every lookup
/// reads the database, so a session ended behind the instance's back is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instance_trusts_no_feed_that_does_not_deliver() {
    if !Backend::postgres_available() {
        return;
    }
    let (url, db) = fresh_postgres_database("gatehouse_deaf").await;
    let TestDb::Postgres { pool, name, .. } = &db else {
        unreachable!("a PostgreSQL database")
    };
    for sql in [
        "CREATE FUNCTION public.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS 'BEGIN END'"
            .to_string(),
        format!("ALTER DATABASE {name} SET search_path = public, pg_catalog"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
    let app = spawn_app_on(url, db).await;
    let token = app.signup_and_login("alice").await;
    let here = Peer::at(&app.base, Backend::Postgres);
    // Longer than a listener takes to subscribe, much shorter than the silence limit.
    for _ in 0..10 {
        assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        here.cache_hits().await,
        0,
        "served from a deaf feed's cache"
    );

    app.execute_sql("DELETE FROM sessions").await;
    assert_eq!(app.get_me(&token).await.status(), StatusCode::UNAUTHORIZED);
}

/// `SESSION_CACHE_ENTRIES=0`: nothing is served from memory, every lookup is a miss.
async fn a_cache_of_zero_entries_reads_every_session_from_the_database(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.session_cache_entries = 0).await;
    let token = app.signup_and_login("alice").await;
    let here = Peer::at(&app.base, backend);
    for _ in 0..3 {
        assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);
    }
    // PostgreSQL would trust a cache within a moment of starting; give it that moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get_me(&token).await.status(), StatusCode::OK);
    assert_eq!(here.cache_hits().await, 0);
    let stats = app.state.store.session_cache_stats();
    assert_eq!((stats.hits, stats.misses), (0, 4));
}

/// With a hash of older parameters, a login upgrades it after the check. Two instances doing
/// so for one account at once: one upgrade lands, and the other login, finding another hash
/// than the one it checked, checks that one too instead of refusing a right password.
async fn logins_on_two_instances_that_both_upgrade_a_hash_both_sign_in(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.signup("alice", PASSWORD).await.status(), StatusCode::OK);
    let peer = Peer::start(&app, backend).await;
    let old_hash = older_hash_of(PASSWORD).await;
    for round in 0..20 {
        set_alices_hash(&app, &old_hash).await;
        let (here, there) = tokio::join!(login(&app.base), login(&peer.base));
        assert_eq!(
            (here, there),
            (StatusCode::OK, StatusCode::OK),
            "round {round}"
        );
        assert_ne!(app.stored_hash("alice").await, old_hash, "upgraded");
    }
}

/// A password change checks the current password, hashes the new one and replaces the hash
/// only over the one it checked. A login on another instance that upgrades the same
/// password's hash meanwhile is no reason to answer "changed meanwhile": the change goes
/// through, and the login either signed in before it or is refused after it.
async fn a_password_change_beside_a_login_upgrading_the_hash_goes_through(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    let peer = Peer::start(&app, backend).await;
    let current = "correct horse battery";
    let old_hash = older_hash_of(current).await;
    let change = || {
        app.client
            .post(app.url("/users/me/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": current, "new_password": "a brand new passphrase"}))
            .send()
    };
    for round in 0..20 {
        set_alices_hash(&app, &old_hash).await;
        let (changed, logged_in) = tokio::join!(change(), login(&peer.base));
        assert_eq!(changed.unwrap().status(), StatusCode::OK, "round {round}");
        assert!(
            [StatusCode::OK, StatusCode::UNAUTHORIZED].contains(&logged_in),
            "round {round}: {logged_in}"
        );
    }
}

/// The race of the two tests above, every time: a trigger plays the other instance, whose
/// upgrade of the same password's hash lands between this login's check and its replace.
async fn a_login_whose_hash_another_instance_upgraded_first_signs_in(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.signup("alice", PASSWORD).await.status(), StatusCode::OK);
    let upgraded = another_instance_upgrades_first(&app).await;

    assert_eq!(login(&app.base).await, StatusCode::OK);
    assert_eq!(race_fired(&app).await, 1);
    assert_eq!(
        app.stored_hash("alice").await,
        upgraded,
        "the other upgrade stays"
    );
}

async fn a_password_change_whose_hash_another_instance_upgraded_first_goes_through(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let token = app.signup_and_login("alice").await;
    another_instance_upgrades_first(&app).await;

    let new_password = "a brand new passphrase";
    let body = json!({"current_password": PASSWORD, "new_password": new_password});
    let changed = app.post_auth("/users/me/password", &token, &body).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(login(&app.base).await, StatusCode::UNAUTHORIZED);
    let with_new = app.login("alice", new_password).await;
    assert_eq!(with_new.status(), StatusCode::OK);
    assert_eq!(race_fired(&app).await, 1);
}

/// Gives alice a hash of older parameters, and sets the trigger of
/// `another_instance_replaces_first` on it with a hash of current parameters, which it returns.
async fn another_instance_upgrades_first(app: &TestApp) -> String {
    let old_hash = older_hash_of(PASSWORD).await;
    let upgraded = current_hash_of(app, PASSWORD).await;
    set_alices_hash(app, &old_hash).await;
    another_instance_replaces_first(app, &old_hash, &upgraded).await;
    upgraded
}

/// Installs a trigger that, when a statement replaces the hash `old`, puts `other` in its
/// place and drops the statement's own change, as if another instance had replaced the hash
/// just before: the statement then finds no row to replace. It counts its turns in
/// `upgrade_race.fired` (`race_fired`).
async fn another_instance_replaces_first(app: &TestApp, old: &str, other: &str) {
    app.execute_sql(
        "CREATE TABLE upgrade_race (replaced TEXT NOT NULL, replacement TEXT NOT NULL, fired BIGINT NOT NULL DEFAULT 0)",
    )
    .await;
    app.execute(
        "INSERT INTO upgrade_race (replaced, replacement) VALUES ($1, '')",
        old,
    )
    .await;
    app.execute("UPDATE upgrade_race SET replacement = $1", other)
        .await;
    match &app.db {
        TestDb::Sqlite(_) => {
            app.execute_sql(
                "CREATE TRIGGER another_instance_replaces_first \
                 BEFORE UPDATE OF hashed_password ON users \
                 WHEN OLD.hashed_password IN (SELECT replaced FROM upgrade_race) \
                  AND NEW.hashed_password NOT IN (SELECT replacement FROM upgrade_race) \
                 BEGIN \
                   UPDATE users SET hashed_password = (SELECT replacement FROM upgrade_race) \
                    WHERE id = OLD.id; \
                   UPDATE upgrade_race SET fired = fired + 1; \
                   SELECT RAISE(IGNORE); \
                 END",
            )
            .await;
        }
        TestDb::Postgres { .. } => {
            app.execute_sql(
                "CREATE FUNCTION another_instance_replaces_first() RETURNS trigger \
                 LANGUAGE plpgsql AS $$ \
                 BEGIN \
                   IF OLD.hashed_password IN (SELECT replaced FROM upgrade_race) \
                      AND NEW.hashed_password NOT IN (SELECT replacement FROM upgrade_race) THEN \
                     UPDATE users SET hashed_password = (SELECT replacement FROM upgrade_race) \
                      WHERE id = OLD.id; \
                     UPDATE upgrade_race SET fired = fired + 1; \
                     RETURN NULL; \
                   END IF; \
                   RETURN NEW; \
                 END $$",
            )
            .await;
            app.execute_sql(
                "CREATE TRIGGER another_instance_replaces_first \
                 BEFORE UPDATE OF hashed_password ON users FOR EACH ROW \
                 EXECUTE FUNCTION another_instance_replaces_first()",
            )
            .await;
        }
    }
}

/// How many times the trigger of `another_instance_replaces_first` played the other instance.
async fn race_fired(app: &TestApp) -> i64 {
    app.count("SELECT fired FROM upgrade_race WHERE $1 = $1", "")
        .await
}

/// A hash of `password` with the test app's own parameters, as another instance writes it.
async fn current_hash_of(app: &TestApp, password: &str) -> String {
    let hasher = gatehouse::auth::PasswordHasher::new(app.state.config.hash_params).unwrap();
    let password = gatehouse::domain::Password::attempt(password.into()).unwrap();
    hasher.hash(&password).await.unwrap()
}

/// A hash of `password` made with older parameters than the test app's, which a login
/// upgrades.
async fn older_hash_of(password: &str) -> String {
    let older = gatehouse::auth::PasswordHasher::new(gatehouse::config::HashParams {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    })
    .unwrap();
    let password = gatehouse::domain::Password::attempt(password.into()).unwrap();
    older.hash(&password).await.unwrap()
}

/// Gives alice's account `hash`, as a login's upgrade would: her sessions stay.
async fn set_alices_hash(app: &TestApp, hash: &str) {
    let (now, user_id) = (app.clock.now(), app.user_id("alice").await);
    let store = &app.state.store;
    let current = app.stored_hash("alice").await;
    let replaced = store.replace_password_hash(user_id, &current, hash, now);
    assert!(replaced.await.unwrap());
}

/// Alice's login with `PASSWORD` at the instance at `base`; its status.
async fn login(base: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/token"))
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .status()
}
