//! The service's connections to PostgreSQL: logins and sign-ups have their own (the password
//! lane's), which the database server names apart from the others; some of each kind are open
//! before requests need them; and none waits to send what it writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::{
    Backend, TestApp, TestDb, fresh_postgres_database, spawn_app, spawn_app_with,
};
use crate::process::Process;
use crate::relay::{FrontendMessages, Relay};

/// How many connections to the app's database each name starting with `prefix` has
/// (`application_name`; the test's own connections have none).
async fn connection_counts(app: &TestApp, prefix: &str) -> BTreeMap<String, i64> {
    let TestDb::Postgres { pool, .. } = &app.db else {
        unreachable!()
    };
    sqlx::query_as::<_, (String, i64)>(
        "SELECT application_name, count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND starts_with(application_name, $1) GROUP BY 1",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// The names, each once and in order, of those connections.
async fn connection_names(app: &TestApp, prefix: &str) -> Vec<String> {
    connection_counts(app, prefix).await.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_sign_ups_have_connections_of_their_own() {
    if !Backend::postgres_available() {
        return;
    }
    // With no connections kept open, the lane's open on the first login.
    let app = spawn_app_with(Backend::Postgres, |config| config.db_min_connections = 0).await;
    assert_eq!(
        connection_names(&app, "gatehouse").await,
        ["gatehouse"],
        "before any login, only the shared connections are open"
    );

    let token = app.signup_and_login("alice").await;
    assert_eq!(app.get_me(&token).await.status(), 200);
    assert_eq!(
        connection_names(&app, "gatehouse").await,
        ["gatehouse", "gatehouse-login"]
    );
}

/// `DATABASE_MIN_CONNECTIONS` connections are open before the first request needs one, for
/// other requests and for logins alike: a request that has to open one waits for a TCP
/// connection, TLS, and the server starting a process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_open_before_the_first_request_needs_them() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |config| config.db_min_connections = 3).await;
    // Three for requests beside the change feed's listener; on the lane, one per hashing
    // thread at most, and no more until logins need them.
    let shared = 3 + 1;
    let lane = 3.min(i64::try_from(app.state.hasher.slots()).unwrap());
    // They open in the background; the deadline only bounds a failing run.
    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let counts = connection_counts(&app, "gatehouse").await;
        let open = |name: &str| counts.get(name).copied().unwrap_or(0);
        if (open("gatehouse") >= shared && open("gatehouse-login") >= lane)
            || Instant::now() > deadline
        {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(counts["gatehouse"] >= shared, "{counts:?}");
    assert_eq!(counts.get("gatehouse-login"), Some(&lane), "{counts:?}");
}

crate::both_backends!(work_on_the_password_lane_uses_the_lanes_store);

async fn work_on_the_password_lane_uses_the_lanes_store(backend: Backend) {
    let app = spawn_app(backend).await;
    let lane_store = app.state.password_lane.store().clone();
    let given = app
        .state
        .clone()
        .on_password_lane(|state| async move { state.store })
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&given, &lane_store));
    // SQLite's connections serve any runtime: there the lane keeps the one store.
    assert_eq!(
        Arc::ptr_eq(&given, &app.state.store),
        backend == Backend::Sqlite
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_given_in_the_url_is_kept() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |config| {
        let mut url = url::Url::parse(&config.database_url).unwrap();
        url.query_pairs_mut()
            .append_pair("application_name", "shop");
        config.database_url = url.into();
    })
    .await;
    app.signup_and_login("alice").await;
    assert_eq!(connection_names(&app, "shop").await, ["shop", "shop-login"]);
}

/// sqlx checks every connection that comes back to its pool with a round trip of its own: a
/// `Sync` message alone, after the statement's answer. The service hands a connection that
/// has answered to the next statement instead, so that a login makes its two statements and
/// nothing more. Read off the wire of the password lane's connections (which logins use, and
/// nothing else in this test), through a relay, in plain text.
///
/// The service runs as its own process. The time of the last cut connection is the process's
/// (`lost_connections`), and in this one every test on PostgreSQL cuts some when it ends: it
/// drops its database while its app's change feed still listens, about twice a second in a
/// full run. Each such sign made the lane check its connections once more, and two of them
/// within one test's logins failed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_not_followed_by_a_check_of_the_connection() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(relay) = Relay::to_test_database(true).await else {
        return;
    };
    let (url, _db) = fresh_postgres_database("gatehouse_test").await;
    let mut url = url::Url::parse(&relay.url_for(&url)).unwrap();
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != "sslmode")
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("sslmode", "disable");
    let process = Process::start(&[
        ("DATABASE_URL", url.as_str()),
        ("RATE_LIMIT_LOGIN", "1000/minute"),
    ]);
    let client = reqwest::Client::new();
    let password = "correct horse battery";
    process.signup_and_login(&client, "alice", password).await;

    const LOGINS: usize = 20;
    let lane = "gatehouse-login";
    let before = FrontendMessages::of(lane, &relay.sent());
    for _ in 0..LOGINS {
        let login = client
            .post(process.url("/token"))
            .form(&[("username", "alice"), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), reqwest::StatusCode::OK);
    }
    let after = FrontendMessages::of(lane, &relay.sent());
    let statements = after.statements - before.statements;
    let checks = after.checks - before.checks;
    assert!(
        statements >= 2 * LOGINS,
        "{statements} statements in {LOGINS} logins: the relay did not see them"
    );
    // A connection idle for a second is checked before use, which a stalled machine may meet.
    assert!(
        checks <= 1,
        "{checks} checks of a connection beside {statements} statements in {LOGINS} logins"
    );
}

/// Each of the service's connections to PostgreSQL sends what it writes at once
/// (`TCP_NODELAY`). With Nagle's algorithm on, the second of two small writes waits for the
/// server to acknowledge the first, which Linux delays by up to 40 ms. Opening a TLS
/// connection makes two such pairs, so each new connection took about 90 ms longer on
/// loopback (sqlx 0.9.0 left the algorithm on; 0.9.1 turns it off). What a user saw was a
/// slow start and slow requests whenever the pool grew; this checks the cause, which a timing
/// could not pin down on a shared machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_postgres_send_without_delay() {
    if !Backend::postgres_available() {
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    app.signup_and_login("alice").await;
    let TestDb::Postgres { pool, .. } = &app.db else {
        unreachable!()
    };
    // The ports the server sees are this process's only when nothing stands between them (a
    // Unix socket, a proxy, a port mapping): this test's own connection tells.
    let seen: (Option<i32>, Option<i32>) =
        sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
            .fetch_one(pool)
            .await
            .unwrap();
    let sockets = tcp_sockets_by_ports();
    let direct = match seen {
        (Some(client), Some(server)) => u16::try_from(client)
            .ok()
            .zip(u16::try_from(server).ok())
            .filter(|ends| sockets.contains_key(ends)),
        _ => None,
    };
    let Some((_, server_port)) = direct else {
        eprintln!(
            "skipping: the test database is reached through a Unix socket, a proxy or a port \
             mapping (the server sees this test's connection as ports {seen:?})"
        );
        return;
    };
    // The service's end of each of its connections, as the server sees it.
    let ports: Vec<(String, i32)> = sqlx::query_as(
        "SELECT application_name, client_port FROM pg_stat_activity \
         WHERE datname = current_database() AND starts_with(application_name, 'gatehouse')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let names: std::collections::BTreeSet<_> =
        ports.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["gatehouse", "gatehouse-login"].into());

    let sockets = tcp_sockets_by_ports();
    for (name, port) in ports {
        let ends = (u16::try_from(port).unwrap(), server_port);
        let fd = sockets.get(&ends).unwrap_or_else(|| {
            panic!("no socket of this process goes from port {port} to the server ({name})")
        });
        assert!(
            sends_without_delay(*fd),
            "the {name} connection from port {port} has Nagle's algorithm on"
        );
    }
}

/// This process's TCP sockets, by local and remote port (`/proc/self/net/tcp*` gives each
/// socket's ports and inode; `/proc/self/fd` gives the file descriptor of each inode).
fn tcp_sockets_by_ports() -> std::collections::HashMap<(u16, u16), std::os::fd::RawFd> {
    let port = |address: &str| {
        let (_, port) = address.rsplit_once(':').unwrap();
        u16::from_str_radix(port, 16).unwrap()
    };
    let mut ports_of_inode = std::collections::HashMap::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(9))
            else {
                continue;
            };
            ports_of_inode.insert(inode.to_string(), (port(local), port(remote)));
        }
    }
    let mut sockets = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        else {
            continue;
        };
        if let (Some(ports), Ok(fd)) = (
            ports_of_inode.get(inode),
            entry.file_name().to_string_lossy().parse(),
        ) {
            sockets.insert(*ports, fd);
        }
    }
    sockets
}

fn sends_without_delay(fd: std::os::fd::RawFd) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `on` and `len` outlive the call and `len` is the size of `on`. A descriptor
    // closed in the meantime makes the call fail, which the assert reports.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw mut on).cast(),
            &mut len,
        )
    };
    assert_eq!(
        result,
        0,
        "getsockopt(TCP_NODELAY) on descriptor {fd}: {}",
        std::io::Error::last_os_error()
    );
    on != 0
}
