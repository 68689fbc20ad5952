//! A running `gatehouse` binary, for tests of what only the whole process shows: its logs,
//! its signals, state it keeps for the whole process.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::helpers::signup_and_login_at;

const BINARY: &str = env!("CARGO_BIN_EXE_gatehouse");

/// The binary with an empty environment in `dir` (so no `.env` is picked up), logging warnings.
pub fn command(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear().current_dir(dir).env("RUST_LOG", "warn");
    command
}

/// Fails the test, showing the binary's stderr, unless it exited with 0.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub struct Process {
    child: Child,
    pub base: String,
    stderr: Option<JoinHandle<String>>,
    dir: tempfile::TempDir,
}

impl Process {
    /// Starts the binary with an empty environment plus `env`, on a free port, with its data
    /// (and SQLite, unless `env` sets `DATABASE_URL`) in a temporary folder, and waits until it
    /// listens.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BINARY)
            .env_clear()
            .current_dir(dir.path())
            // Port 0: the binary binds a free port and names it in its first line, so no other
            // process can take the port between a probe and the bind.
            .env("PORT", "0")
            .env("SECRET_KEY", "a-test-secret-key-of-at-least-32-bytes")
            .env("ARGON2_MEMORY_KIB", "4096")
            .env("ARGON2_ITERATIONS", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Collect stderr as it comes, so a chatty log level never fills the pipe.
        let mut stderr = child.stderr.take().unwrap();
        let collector = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut first_line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first_line)
            .unwrap();
        let Some(url) = first_line
            .trim_end()
            .strip_prefix("Gatehouse is running: open ")
        else {
            let _ = child.kill();
            let stderr = collector.join().unwrap_or_default();
            panic!("did not start: {first_line:?}\n{stderr}");
        };
        Self {
            child,
            base: url.trim_end_matches('/').to_string(),
            stderr: Some(collector),
            dir,
        }
    }

    /// The folder the binary runs in; its data folder is `data/` inside.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Signs `username` up and logs in, asserting each step, and returns the access token.
    pub async fn signup_and_login(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> String {
        signup_and_login_at(client, &self.base, username, password).await
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Waits (boundedly) for the process to exit, and returns whether it exited with success
    /// and everything it wrote to stderr.
    pub fn wait(mut self) -> (bool, String) {
        let mut status = None;
        for _ in 0..600 {
            if let Some(exited) = self.child.try_wait().unwrap() {
                status = Some(exited);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let Some(status) = status else {
            let _ = self.child.kill();
            panic!("the process did not exit");
        };
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status.success(), stderr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
