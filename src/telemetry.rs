//! Log setup: human-readable lines by default, JSON with `LOG_FORMAT=json`; the level comes
//! from `RUST_LOG` (default `info`). Logs go to stderr.
//!
//! Lines are collected in memory and written in batches, at the latest `FLUSH_INTERVAL` after
//! they were logged, so a request does not pay a `write(2)` (several microseconds, more than
//! the rest of its logging) for its log line. No line is dropped; `LogGuard` writes what is
//! left when the process ends.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in memory before it reaches stderr.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Above this many waiting bytes, the logging thread writes them itself.
const FLUSH_BYTES: usize = 64 * 1024;

/// Keep it alive until the process exits: dropping it writes the lines still waiting.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    batch: Arc<Batch>,
    flusher: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        *self
            .batch
            .stopping
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.batch.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.batch.flush();
    }
}

pub fn init() -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let batch = Arc::new(Batch::default());
    // Logs go to stderr, so stdout carries only what the command itself prints.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchWriter(batch.clone()))
        .with_ansi(std::io::stderr().is_terminal());
    // `try_init` so a second call (tests) is harmless.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    let flusher = std::thread::Builder::new()
        .name("gatehouse-log".into())
        .spawn({
            let batch = batch.clone();
            move || batch.flush_periodically()
        })
        .ok();
    LogGuard { batch, flusher }
}

/// Lines waiting to be written.
#[derive(Default)]
struct Batch {
    lines: Mutex<Vec<u8>>,
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl Batch {
    fn push(&self, line: &[u8]) {
        let full = {
            let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            lines.extend_from_slice(line);
            (lines.len() >= FLUSH_BYTES).then(|| std::mem::take(&mut *lines))
        };
        if let Some(lines) = full {
            write_out(&lines);
        }
    }

    fn flush(&self) {
        let lines = std::mem::take(&mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner));
        if !lines.is_empty() {
            write_out(&lines);
        }
    }

    fn flush_periodically(&self) {
        let mut stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        while !*stopping {
            stopping = self
                .wake
                .wait_timeout(stopping, FLUSH_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            self.flush();
        }
    }
}

/// Logging must never fail the caller: a line that cannot be written is lost.
fn write_out(lines: &[u8]) {
    let _ = std::io::stderr().lock().write_all(lines);
}

/// Hands each formatted event to the batch (the formatter writes one event in one call).
struct BatchWriter(Arc<Batch>);

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = &'a Batch;

    fn make_writer(&'a self) -> Self::Writer {
        &self.0
    }
}

impl Write for &Batch {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
