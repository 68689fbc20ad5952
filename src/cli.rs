//! The command line: `gatehouse [serve]` and `gatehouse migrate`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::server::{Server, shutdown_signal};
use crate::store::{self, ConnectOptions, redact_url};

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
}

pub fn run(cli: Cli) -> ExitCode {
    // A missing .env is normal; real environment variables take precedence over it.
    let _ = dotenvy::dotenv();
    crate::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let config = Config::from_env()?;
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let database = redact_url(&config.database_url);
    let public_url = config.public_url.clone();
    let server = Server::build(config).await?;
    tracing::info!(%database, address = %server.local_addr(), "Gatehouse is listening");
    println!("Gatehouse is running: open {public_url}");
    server.run(shutdown_signal()).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    store::connect(&ConnectOptions {
        url: config.database_url.clone(),
        acquire_timeout: config.db_acquire_timeout,
    })
    .await?;
    println!("Migrations applied to {}", redact_url(&config.database_url));
    Ok(())
}
