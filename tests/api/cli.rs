//! The real binary: configuration refusals, `migrate`, and `serve` with no configuration.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{assert_success, command as gatehouse};

#[test]
fn production_refuses_to_start_without_a_strong_secret() {
    let dir = tempfile::tempdir().unwrap();
    let missing = gatehouse(dir.path())
        .env("GATEHOUSE_ENV", "production")
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("SECRET_KEY"), "says why: {stderr}");

    // `prod` is production too.
    let short = gatehouse(dir.path())
        .env("GATEHOUSE_ENV", "prod")
        .env("SECRET_KEY", "too-short")
        .output()
        .unwrap();
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    assert!(
        !stderr.contains("too-short"),
        "the secret itself is never printed"
    );
    assert!(!dir.path().join("data").join("secret_key").exists());
}

/// A port of 127.0.0.1 that nothing listens on (a moment ago).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A PostgreSQL server that does not answer is named as such, not as a pool that timed out.
#[test]
fn a_database_that_refuses_connections_is_said_to() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = free_port();
    let output = gatehouse(dir.path())
        .env(
            "DATABASE_URL",
            format!("postgres://gatehouse@127.0.0.1:{closed_port}/db"),
        )
        .env("DATABASE_ACQUIRE_TIMEOUT_SECONDS", "1")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("pool timed out"), "{stderr}");
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let output = gatehouse(dir.path()).arg("migrate").output().unwrap();
    assert_success(&output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("Migrations applied"));
    assert!(dir.path().join("data").join("gatehouse.db").exists());
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value, expected) in [
        ("PORT", "eighty", "PORT"),
        ("DATABASE_URL", "mysql://localhost/db", "DATABASE_URL"),
        (
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            "0",
            "ACCESS_TOKEN_EXPIRE_MINUTES",
        ),
        (
            "DATABASE_MIN_CONNECTIONS",
            "9",
            "DATABASE_MIN_CONNECTIONS must be at most 8",
        ),
        ("DATABASE_MIN_CONNECTIONS", "-1", "DATABASE_MIN_CONNECTIONS"),
        (
            "HOUSEKEEPING_INTERVAL_SECONDS",
            "5",
            "HOUSEKEEPING_INTERVAL_SECONDS must be 0 (never) or 60 to 604800",
        ),
        (
            "AUDIT_RETENTION_DAYS",
            "99999999",
            "AUDIT_RETENTION_DAYS must be 0 (keep every event) or 1 to 36500",
        ),
        // Lifetimes past what a date can hold used to make every login a 500.
        (
            "REMEMBER_ME_DAYS",
            "100000000",
            "REMEMBER_ME_DAYS must be from 1 to 3650 (ten years); got 100000000",
        ),
        (
            "PASSWORD_RESET_TOKEN_MINUTES",
            "0",
            "PASSWORD_RESET_TOKEN_MINUTES must be from 1 to 5256000",
        ),
        (
            "SESSION_IDLE_MINUTES",
            "18446744073709551615",
            "SESSION_IDLE_MINUTES must be from 1 to 5256000",
        ),
        // A typo used to start in development mode: a generated key, development defaults.
        (
            "GATEHOUSE_ENV",
            "staging",
            "GATEHOUSE_ENV must be production (prod) or development (dev); got \"staging\"",
        ),
        // The driver would log it, value included.
        (
            "DATABASE_URL",
            "postgres://app@127.0.0.1:1/db?sslpassword=hunter2",
            "DATABASE_URL: sslpassword is not supported",
        ),
        // Every hash made with more would fail its next login.
        (
            "ARGON2_MEMORY_KIB",
            "2000000",
            "ARGON2_MEMORY_KIB=2000000 is more than the 1048576 KiB",
        ),
        (
            "PUBLIC_URL",
            "auth.example.com:443",
            "PUBLIC_URL=\"auth.example.com:443\" must start with https://",
        ),
        (
            "PUBLIC_URL",
            "https://example.com/auth/",
            "must be the service's root, with no path",
        ),
        (
            "DATABASE_ACQUIRE_TIMEOUT_SECONDS",
            "0",
            "DATABASE_ACQUIRE_TIMEOUT_SECONDS must be from 1 to 300 (got 0)",
        ),
    ] {
        let output = gatehouse(dir.path())
            .env(name, value)
            .arg("migrate")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}={value}: {stderr}");
    }
}

/// `.env` is read from the working directory only, and a line that does not parse stops the
/// start with its number, never its content (it may hold a secret); it used to drop that line
/// and every one after it unnoticed.
#[test]
fn a_dot_env_file_is_read_from_the_working_directory_and_a_bad_line_is_named() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join(".env"), "PORT=eighty\n").unwrap();
    let dir = parent.path().join("service");
    std::fs::create_dir(&dir).unwrap();
    let migrated = gatehouse(&dir).arg("migrate").output().unwrap();
    assert_success(&migrated);

    let ignored = String::from_utf8_lossy(&migrated.stderr);
    assert!(ignored.contains(".env is not read"), "{ignored}");

    for (file, line) in [
        (
            "PORT=8001\nthe secret is hunter2 and more\nSECRET_KEY=x\n",
            2,
        ),
        // An unquoted space in a value: the parser reports the value alone.
        (
            "PORT=8001\n\nMAIL_FROM=Gatehouse <hunter2@example.com>\n",
            3,
        ),
        // A comment with the same words comes first: the line is the one that failed.
        (
            "# the secret is hunter2 and more\nthe secret is hunter2 and more\n",
            2,
        ),
    ] {
        std::fs::write(dir.join(".env"), file).unwrap();
        let refused = gatehouse(&dir).arg("migrate").output().unwrap();
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        let named = format!(".env: line {line} does not parse");
        assert!(stderr.contains(&named), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn serve_with_no_configuration_uses_sqlite_and_a_generated_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = gatehouse(dir.path())
        .env("PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    assert_eq!(
        first_line.trim(),
        format!("Gatehouse is running: open http://127.0.0.1:{port}/")
    );

    let key_path = dir.path().join("data").join("secret_key");
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap().trim().len(),
        64,
        "256 bits, hex"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(dir.path().join("data").join("gatehouse.db").exists());

    let health = reqwest::blocking_get(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(health, 200);

    // SIGTERM stops it cleanly.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

mod reqwest {
    /// A GET with a fresh runtime, for the synchronous process tests.
    pub fn blocking_get(url: &str) -> u16 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            ::reqwest::get(url)
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or_else(|e| panic!("GET {url}: {e:?}"))
        })
    }
}

/// With no `CORS_ORIGINS`, a developer's machine lets the tutorial's own origins call the API
/// (its Next.js login page on port 3000 among them), with whatever headers the preflight
/// asks for; production allows no origin until one is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_origins_only_a_developer_machine_allows_the_tutorials_origins() {
    for (env, allowed) in [("development", true), ("production", false)] {
        let process = crate::process::Process::start(&[("GATEHOUSE_ENV", env)]);
        let preflight = ::reqwest::Client::new()
            .request(::reqwest::Method::OPTIONS, process.url("/token"))
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, x-requested-with",
            )
            .send()
            .await
            .unwrap();
        let headers = preflight.headers();
        let origin = headers.get("access-control-allow-origin");
        if allowed {
            assert_eq!(origin.unwrap(), "http://localhost:3000");
            let asked = headers["access-control-allow-headers"].to_str().unwrap();
            assert_eq!(asked, "authorization, x-requested-with");
            assert!(headers.get("access-control-allow-credentials").is_none());
        } else {
            assert!(origin.is_none(), "{env}: {headers:?}");
        }
        let other = ::reqwest::Client::new()
            .request(::reqwest::Method::OPTIONS, process.url("/token"))
            .header("origin", "https://elsewhere.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        let origin = other.headers().get("access-control-allow-origin");
        assert!(origin.is_none(), "{env}");
        process.terminate();
        assert!(process.wait().0);
    }
}
