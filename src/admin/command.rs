//! `gatehouse user ...`: managing accounts from the command line, against `DATABASE_URL`.
//! Same rules as the API (`crate::domain`); no password or hash is ever printed.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use clap::Subcommand;

use super::actions::{AdminAction, apply};
use crate::audit::EventKind;
use crate::auth::PasswordHasher;
use crate::config::Config;
use crate::domain::{Email, Password, PasswordContext, Username};
use crate::store::{
    self, ConnectOptions, NewEvent, NewUser, PasswordChange, PasswordSet, Store, StoreError, User,
};

/// Longest full name, as the sign-up API allows.
const FULL_NAME_MAX_CHARS: usize = 200;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is asked twice (or read from standard input).
    Create {
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        full_name: Option<String>,
        /// Give the new user superuser rights (the admin console and the /admin/ API).
        #[arg(long)]
        superuser: bool,
        /// Read the password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List every user with their id, flags and creation date.
    List,
    /// Refuse the user's sign-ins and end all of their sessions.
    Disable { username: String },
    /// Let a disabled user sign in again.
    Enable { username: String },
    /// Delete the user with their notes, sessions and tokens.
    Delete { username: String },
    /// Set a new password (asked twice, or read from standard input); ends every session.
    SetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give the user superuser rights.
    Promote { username: String },
    /// Withdraw the user's superuser rights.
    Demote { username: String },
}

/// Runs one `gatehouse user` command; errors become a message and exit code 1.
pub async fn run(config: Config, command: UserCommand) -> anyhow::Result<()> {
    let store = store::connect(&ConnectOptions::for_command(&config)).await?;
    let store = store.as_ref();
    match command {
        UserCommand::Create {
            username,
            email,
            full_name,
            superuser,
            password_stdin,
        } => {
            let new_user = validate_new_user(&username, email, full_name)?;
            let context = PasswordContext {
                username: new_user.0.as_str(),
                email: new_user.1.as_ref().map(|e| e.as_str()),
            };
            let password = new_password(&config, read_password(password_stdin)?, context)?;
            let hasher = PasswordHasher::new(config.hash_params)?;
            create(store, &hasher, new_user, password, superuser).await
        }
        UserCommand::List => list(store).await,
        UserCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let user = find(store, &username).await?;
            let context = PasswordContext {
                username: &user.username,
                email: user.email.as_deref(),
            };
            let password = new_password(&config, read_password(password_stdin)?, context)?;
            let hasher = PasswordHasher::new(config.hash_params)?;
            let hash = hasher.hash(&password).await?;
            let now = Utc::now();
            let change = PasswordChange {
                user_id: user.id,
                new_hash: &hash,
                replaces: None,
                reset_link: None,
                keep_session: None,
                // As a reset does: an account locked by failed logins opens again.
                failures_of: &crate::auth::throttle::name_hash(&user.username),
            };
            let PasswordSet::Set {
                sessions_ended: ended,
            } = store.set_password(change, now).await?
            else {
                bail!("user {} was deleted meanwhile", user.username);
            };
            record(store, &user, "password set", now).await?;
            println!(
                "Password of {} changed; {ended} session(s) ended.",
                user.username
            );
            Ok(())
        }
        UserCommand::Disable { username } => act(store, &username, AdminAction::Disable).await,
        UserCommand::Enable { username } => act(store, &username, AdminAction::Enable).await,
        UserCommand::Delete { username } => act(store, &username, AdminAction::Delete).await,
        UserCommand::Promote { username } => act(store, &username, AdminAction::Promote).await,
        UserCommand::Demote { username } => act(store, &username, AdminAction::Demote).await,
    }
}

fn validate_new_user(
    username: &str,
    email: Option<String>,
    full_name: Option<String>,
) -> anyhow::Result<(Username, Option<Email>, Option<String>)> {
    let username = Username::parse(username).map_err(|msg| anyhow!("username: {msg}"))?;
    let email = email
        .filter(|e| !e.trim().is_empty())
        .map(|e| Email::parse(&e))
        .transpose()
        .map_err(|msg| anyhow!("email: {msg}"))?;
    let full_name = full_name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if full_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > FULL_NAME_MAX_CHARS)
    {
        bail!("full name: Full name must be at most {FULL_NAME_MAX_CHARS} characters long");
    }
    Ok((username, email, full_name))
}

async fn create(
    store: &dyn Store,
    hasher: &PasswordHasher,
    (username, email, full_name): (Username, Option<Email>, Option<String>),
    password: Password,
    superuser: bool,
) -> anyhow::Result<()> {
    let hashed_password = hasher.hash(&password).await?;
    let now = Utc::now();
    let new_user = NewUser {
        username,
        email,
        full_name,
        hashed_password,
    };
    let user = match store.create_user(new_user, now).await {
        Ok(user) => user,
        Err(StoreError::Conflict(_)) => bail!("a user with that name already exists"),
        Err(other) => return Err(other.into()),
    };
    if superuser {
        store.set_superuser(user.id, true, now).await?;
    }
    let what = if superuser { "superuser" } else { "user" };
    record(store, &user, &format!("created as a {what}"), now).await?;
    println!("Created {what} {} (id {}).", user.username, user.id);
    Ok(())
}

async fn list(store: &dyn Store) -> anyhow::Result<()> {
    const PAGE: i64 = 500;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:>6}  {:<24} {:<32} {:<10} CREATED",
        "ID", "USERNAME", "EMAIL", "FLAGS"
    )?;
    let mut offset = 0;
    loop {
        let page = store.search_users("", PAGE, offset).await?;
        for user in &page.users {
            let mut flags = Vec::new();
            if user.is_superuser {
                flags.push("superuser");
            }
            if user.disabled {
                flags.push("disabled");
            }
            writeln!(
                out,
                "{:>6}  {:<24} {:<32} {:<10} {}",
                user.id,
                user.username,
                user.email.as_deref().unwrap_or("-"),
                if flags.is_empty() {
                    "-".to_string()
                } else {
                    flags.join(",")
                },
                user.created_at.format("%Y-%m-%d")
            )?;
        }
        offset += PAGE;
        if offset >= page.total {
            writeln!(out, "{} user(s)", page.total)?;
            return Ok(());
        }
    }
}

async fn act(store: &dyn Store, username: &str, action: AdminAction) -> anyhow::Result<()> {
    let user = find(store, username).await?;
    let now = Utc::now();
    let ended = apply(store, None, &user, action, now).await?;
    // A deleted user's event keeps who it was in its detail; the row itself is gone.
    let detail = match action {
        AdminAction::Delete => format!("deleted user {} (id {})", user.username, user.id),
        _ => action.detail().to_string(),
    };
    let subject = (action != AdminAction::Delete).then_some(user.id);
    write_event(store, subject, detail, now).await?;
    let name = &user.username;
    match action {
        AdminAction::Disable => println!("Disabled {name}; {ended} session(s) ended."),
        AdminAction::Enable => println!("Enabled {name}."),
        AdminAction::Promote => println!("{name} is now a superuser."),
        AdminAction::Demote => println!("{name} is no longer a superuser."),
        AdminAction::EndSessions => println!("Ended {ended} session(s) of {name}."),
        AdminAction::Delete => println!("Deleted {name} with their notes and sessions."),
    }
    Ok(())
}

async fn find(store: &dyn Store, username: &str) -> anyhow::Result<User> {
    store
        .user_by_key(&Username::fold(username))
        .await?
        .with_context(|| format!("no user named {username:?}"))
}

async fn record(
    store: &dyn Store,
    user: &User,
    detail: &str,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    write_event(store, Some(user.id), detail.to_string(), now).await
}

/// The audit trail entry of a command-line action: no actor (the operator has the database),
/// marked as coming from the command line.
async fn write_event(
    store: &dyn Store,
    user_id: Option<i64>,
    detail: String,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    store
        .record_event(NewEvent {
            kind: EventKind::AdminAction.as_str(),
            user_id,
            actor_id: None,
            ip: None,
            user_agent: Some("gatehouse command line".into()),
            detail: Some(detail),
            created_at: now,
        })
        .await?;
    Ok(())
}

/// Checks a new password against the same policy as sign-up and password changes.
fn new_password(
    config: &Config,
    raw: String,
    context: PasswordContext<'_>,
) -> anyhow::Result<Password> {
    config
        .abuse
        .password_policy
        .check(raw, context)
        .map_err(|msg| anyhow!("password: {msg}"))
}

/// A password from the first line of standard input, or asked twice on the terminal without
/// echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let raw = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Password (again): ")?;
        if first != second {
            bail!("the two passwords differ");
        }
        first
    } else {
        bail!("standard input is not a terminal: use --password-stdin to read the password from it")
    };
    Ok(raw)
}
