//! The command line: `gatehouse [serve]`, `gatehouse migrate`, `gatehouse keys generate`,
//! `gatehouse user ...` and `gatehouse import`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use axum::Router;
use clap::{Parser, Subcommand};

use crate::admin::{self, command::UserCommand, import::ImportArgs};
use crate::config::Config;
use crate::http::AppState;
use crate::server::{Server, shutdown_signal};
use crate::store::{self, ConnectOptions, Migrations, redact_url};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Authentication service: sign-up, login, tokens, sessions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Ed25519 keys that sign access tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage accounts: create, list, disable, enable, delete, set-password, promote, demote.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Import the users and notes of the tutorial's PostgreSQL database.
    Import(ImportArgs),
    /// Delete ended sessions, expired links, audit events past AUDIT_RETENTION_DAYS and stale
    /// login-failure counts now (the service also does it every HOUSEKEEPING_INTERVAL_SECONDS).
    Housekeeping,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new Ed25519 private key (PKCS#8 PEM, owner-only) and print its kid.
    Generate {
        /// The file to create; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// The command line, from `.env` and the process's arguments: what `main` runs.
pub fn run() -> ExitCode {
    run_with(Router::new())
}

/// `run` for an application built on Gatehouse: `serve` serves `routes` beside Gatehouse's own
/// (`Server::with_routes`); the other commands are the same.
pub fn run_with(routes: Router<AppState>) -> ExitCode {
    // First, so that arguments that may come from the environment (`--from`) find it there.
    // Real environment variables take precedence over the file.
    if let Err(message) = load_dot_env() {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    run_command(Cli::parse(), routes)
}

/// Runs one parsed command line (`.env` already read).
fn run_command(cli: Cli, routes: Router<AppState>) -> ExitCode {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => with_config(|config| serve(config, routes)),
        Command::Migrate => with_config(migrate),
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => generate_key(&out),
        Command::User { command } => with_config(|config| admin::command::run(config, command)),
        Command::Import(args) => with_config(|config| admin::import::run(config, args)),
        Command::Housekeeping => with_config(housekeeping),
    }
}

/// Runs `task` with the configuration, on an async runtime; errors are logged and printed.
fn with_config<F, Fut>(task: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let logs = crate::telemetry::init();
    // Before the runtime starts its workers, which inherit the slice (and so do the threads
    // they start, such as SQLite's connection threads). The admin commands run here too;
    // short slices cost them nothing.
    crate::scheduling::prefer_short_slices_for_requests();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let config = Config::from_env()?;
        task(config).await
    });
    // Whatever the runtime logs while it stops is written before the guard goes.
    drop(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            // The queued log lines first, then the message.
            drop(logs);
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads `.env` from the working directory, as the README says. A missing file is normal,
/// but one in a folder above, which older versions read, is named, as it no longer counts. A
/// file that does not parse stops the start, as it would otherwise drop the bad line and every
/// one after it unnoticed; the message names the line by its number only, as its content may
/// be a secret.
fn load_dot_env() -> Result<(), String> {
    const FILE: &str = ".env";
    match dotenvy::from_path(FILE) {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            let above = std::env::current_dir().ok().and_then(|dir| {
                dir.ancestors()
                    .skip(1)
                    .map(|d| d.join(FILE))
                    .find(|f| f.is_file())
            });
            if let Some(ignored) = above {
                eprintln!(
                    "warning: {} is not read: .env is read from the working directory only",
                    ignored.display()
                );
            }
            Ok(())
        }
        Err(dotenvy::Error::LineParse(bad, _)) => {
            let where_ = std::fs::read_to_string(FILE)
                .ok()
                .and_then(|text| line_of(&text, &bad))
                .map_or_else(|| "a line".to_string(), |n| format!("line {n}"));
            Err(format!(
                "{FILE}: {where_} does not parse (its content is not shown: it may hold a secret; quote values with spaces)"
            ))
        }
        Err(e) => Err(format!("{FILE}: {e}")),
    }
}

/// The number of the line the parser stopped at, from what it reports: the whole line, or only
/// its value. The first line that is not a comment and is, or ends with, that text; else the
/// first place it appears (a quoted value left open runs over several lines).
fn line_of(text: &str, fragment: &str) -> Option<usize> {
    let fragment = fragment.trim();
    if fragment.is_empty() {
        return None;
    }
    let whole_line = text.lines().position(|line| {
        let line = line.trim();
        !line.starts_with('#') && line.ends_with(fragment)
    });
    match whole_line {
        Some(index) => Some(index + 1),
        None => Some(text[..text.find(fragment)?].matches('\n').count() + 1),
    }
}

async fn serve(config: Config, routes: Router<AppState>) -> anyhow::Result<()> {
    let database = redact_url(&config.database_url);
    let mode = if config.production {
        "production"
    } else {
        "development"
    };
    let server = Server::build(config).await?.with_routes(routes);
    tracing::info!(%database, address = %server.local_addr(), mode, "Gatehouse is listening");
    // The server's own URL: with PORT=0 it carries the port actually bound.
    println!(
        "Gatehouse is running: open {}",
        server.state().config.public_url
    );
    server.run(shutdown_signal()).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let options = ConnectOptions {
        migrations: Migrations::Apply,
        ..ConnectOptions::for_command(&config)
    };
    store::connect(&options).await?;
    println!("Migrations applied to {}", redact_url(&config.database_url));
    Ok(())
}

async fn housekeeping(config: Config) -> anyhow::Result<()> {
    let store = store::connect(&ConnectOptions::for_command(&config)).await?;
    let policy = crate::housekeeping::Policy::of(&config);
    let swept = crate::housekeeping::sweep(store.as_ref(), policy, chrono::Utc::now()).await;
    store.close().await;
    println!("Deleted {}", swept?);
    Ok(())
}

/// Needs no configuration: it only writes a file.
fn generate_key(out: &Path) -> ExitCode {
    match crate::auth::keys::write_new_key(out) {
        Ok(key) => {
            eprintln!(
                "Wrote a new Ed25519 key to {}; see \"Signing keys\" in the README to use it.",
                out.display()
            );
            println!("{}", key.public().kid());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
