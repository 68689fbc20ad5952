//! Benchmark helpers for Gatehouse (see `bench/README.md`):
//!
//! - `serve`: the baseline, a bare axum handler for `GET /users/me/` that verifies the same
//!   HS256 JWT (`SECRET_KEY`) and does one indexed row lookup on the same `DATABASE_URL`.
//! - `hash-time [N]`: seconds per Argon2id verification with the `ARGON2_*` parameters, one
//!   thread, and the hashing limit in logins per second (cores / that time).
//! - `hash-load SECONDS`: one Argon2id loop per core for that long (a login flood's hashing
//!   without its requests).
//! - `seed FROM TO`: users `benchFROM..=benchTO` in one `INSERT ... SELECT`, all sharing one
//!   precomputed Argon2id hash of `BENCH_PASSWORD`.
//! - `flood CONNECTIONS SECONDS USERS`: every connection logs in over and over until the time
//!   is up, waits for every answer and counts statuses.

mod baseline;
mod db;
mod flood;
mod hashing;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    };
    let outcome = match args.first().map(String::as_str) {
        Some("serve") => run(baseline::serve()),
        Some("hash-time") => hashing::report(arg(1, 20) as u32),
        Some("hash-load") => hashing::load(arg(1, 10)),
        Some("seed") => run(db::seed(arg(1, 1), arg(2, 1000))),
        Some("flood") => run(flood::run(arg(1, 1000) as usize, arg(2, 20), arg(3, 1000))),
        _ => {
            eprintln!(
                "usage: gatehouse-bench serve | hash-time [N] | hash-load SECONDS | seed FROM TO | flood CONNECTIONS SECONDS USERS"
            );
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(task)
}

/// A required environment variable.
pub fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"))
}
