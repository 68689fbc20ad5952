//! A real headless Chromium, driven through its own chromedriver, for one scenario: each test
//! gets a fresh app, a fresh driver on a free port and a fresh profile, so tests share
//! nothing and run in parallel.

use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::FutureExt;
use thirtyfour::prelude::*;

use crate::helpers::{Backend, TestApp};

/// Chromium's switches: headless, and nothing that reaches out to the network on its own
/// (on a closed network those connections are refused and slow every start).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// How long to wait for a page to show what a scenario expects before failing.
const PATIENCE: Duration = Duration::from_secs(20);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Runs one browser scenario against a fresh app; the browser is closed however it ends.
/// Without Chromium the scenario is skipped, except in CI, where that is a failure.
pub async fn run(backend: Backend, scenario: impl AsyncFnOnce(&Browser, &TestApp)) {
    run_with(backend, |_| {}, scenario).await
}

/// Like `run`, with the app's configuration adjusted first (for example an SMTP server).
pub async fn run_with(
    backend: Backend,
    adjust: impl FnOnce(&mut gatehouse::config::Config),
    scenario: impl AsyncFnOnce(&Browser, &TestApp),
) {
    let Some(tools) = Tools::find() else {
        return;
    };
    let app = crate::helpers::spawn_app_with(backend, adjust).await;
    let browser = Browser::start(&tools, &app.base).await;
    let outcome = AssertUnwindSafe(scenario(&browser, &app))
        .catch_unwind()
        .await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Where Chromium and chromedriver are installed.
struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Tools {
    fn find() -> Option<Self> {
        let (chromium, chromedriver) = (find_program("chromium"), find_program("chromedriver"));
        if let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) {
            return Some(Self {
                chromium,
                chromedriver,
            });
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromium or chromedriver is not installed: the browser tests must \
             run in CI (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipping browser test: install chromium and chromium-driver");
        None
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A chromedriver child process in a process group of its own, so that ending it also
/// ends any Chromium it started, even when a test fails half-way.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    async fn start(program: &Path) -> Self {
        // A free port can be taken between asking for it and chromedriver binding it;
        // a few attempts make that race harmless.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("chromedriver starts");
            let mut driver = Self {
                child,
                url: format!("http://127.0.0.1:{port}"),
            };
            if driver.wait_until_ready().await {
                return driver;
            }
        }
        panic!("chromedriver did not answer on a free port after 3 attempts");
    }

    async fn wait_until_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let status = client.get(format!("{}/status", self.url)).send().await;
            if status.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        false
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The negative id names the whole process group: chromedriver and its Chromium.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// A browser window on the app under test.
pub struct Browser {
    pub driver: WebDriver,
    base: String,
    // Dropped after the driver has quit: the driver kills Chromium, then the profile goes.
    _chromedriver: Chromedriver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(tools: &Tools, base: &str) -> Self {
        let chromedriver = Chromedriver::start(&tools.chromedriver).await;
        let profile = tempfile::tempdir().expect("a temporary Chromium profile");
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(&tools.chromium.to_string_lossy()).unwrap();
        for arg in CHROMIUM_ARGS {
            caps.add_arg(arg).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))
            .unwrap();
        let driver = WebDriver::new(chromedriver.url.clone(), caps)
            .await
            .expect("chromedriver opens a Chromium session");
        Self {
            driver,
            base: base.to_string(),
            _chromedriver: chromedriver,
            _profile: profile,
        }
    }

    async fn quit(self) {
        let Self {
            driver,
            _chromedriver,
            _profile,
            ..
        } = self;
        if let Err(e) = driver.quit().await {
            eprintln!("closing Chromium failed (it is killed instead): {e}");
        }
    }

    pub async fn open(&self, path: &str) {
        self.driver
            .goto(format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The element with this CSS selector, once the page shows it.
    pub async fn element(&self, css: &str) -> WebElement {
        self.wait_for(&format!("an element {css}"), async |driver| {
            driver.find(By::Css(css)).await.ok()
        })
        .await
    }

    /// Replaces the text of the input with this id, as a user typing.
    pub async fn fill(&self, id: &str, text: &str) {
        let input = self.element(&format!("#{id}")).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap();
    }

    /// Waits until the address bar shows this path (and query, if given).
    pub async fn wait_for_url(&self, path_and_query: &str) {
        let what = format!("the address {path_and_query}");
        self.wait_for(&what, async |driver| {
            let url = driver.current_url().await.ok()?;
            let shown = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            };
            (shown == path_and_query).then_some(())
        })
        .await;
    }

    /// Waits until the visible text of the page contains `needle`.
    pub async fn wait_for_text(&self, needle: &str) {
        let what = format!("the text {needle:?}");
        self.wait_for(&what, async |driver| {
            let body = driver.find(By::Tag("body")).await.ok()?;
            body.text().await.ok()?.contains(needle).then_some(())
        })
        .await;
    }

    /// The visible text of the page.
    pub async fn page_text(&self) -> String {
        self.element("body").await.text().await.unwrap()
    }

    /// The cookie of this name, as the browser holds it.
    pub async fn cookie(&self, name: &str) -> Option<Cookie> {
        let cookies = self.driver.get_all_cookies().await.unwrap();
        cookies.into_iter().find(|c| c.name == name)
    }

    /// Polls `probe` until it finds what it looks for, failing after a bounded wait with a
    /// description of what was missing and the page that was shown instead.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        mut probe: impl AsyncFnMut(&WebDriver) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = probe(&self.driver).await {
                return found;
            }
            if Instant::now() >= deadline {
                let url = self.driver.current_url().await.map(|u| u.to_string());
                let text = match self.driver.find(By::Tag("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("gave up waiting for {what}; the browser shows {url:?}:\n{text}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}
