//! Outgoing email: SMTP through lettre when `SMTP_URL` is set, otherwise an outbox folder in
//! the data directory (with the link in the log, except in production), so the flows work on
//! a developer's machine.
//! Sending never blocks a request: messages go out from a background task with retries.

mod messages;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::AsyncWriteExt;
use tokio_util::task::TaskTracker;

pub use messages::{EmailKind, compose};

/// A message ready to send: both parts rendered.
#[derive(Clone)]
pub struct OutgoingEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The link it carries, logged by the outbox only (never with real SMTP, nor in
    /// production).
    pub link: Option<String>,
}

impl std::fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body holds a single-use token: never in a log line.
        f.debug_struct("OutgoingEmail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

#[async_trait]
trait Transport: Send + Sync {
    async fn deliver(&self, email: &OutgoingEmail) -> anyhow::Result<()>;
}

/// Sends mail in the background; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<dyn Transport>,
    retry_delay: Duration,
    /// Where each send runs, so that shutdown can wait for it (`Server::run`).
    tasks: TaskTracker,
}

const ATTEMPTS: u32 = 4;

impl Mailer {
    /// SMTP when a URL is given (`smtps://user:pass@host:465`, or `smtp://host:587?tls=required`
    /// for STARTTLS, or plain `smtp://host:25`), else the outbox folder, which logs each
    /// message's link when `log_links` (a developer's machine: the link is the point).
    pub fn new(
        smtp_url: Option<&str>,
        from: &str,
        outbox: PathBuf,
        log_links: bool,
        tasks: TaskTracker,
    ) -> anyhow::Result<Self> {
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("MAIL_FROM {from:?} is not an address"))?;
        let transport: Arc<dyn Transport> = match smtp_url {
            Some(url) => Arc::new(Smtp {
                transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("SMTP_URL is not a valid smtp:// or smtps:// URL")?
                    .timeout(Some(Duration::from_secs(15)))
                    .build(),
                from,
            }),
            None => Arc::new(Outbox {
                dir: outbox,
                from,
                log_links,
            }),
        };
        Ok(Self {
            transport,
            retry_delay: Duration::from_secs(2),
            tasks,
        })
    }

    /// Queues a message: returns at once; a failed send is retried a few times, then logged.
    pub fn send(&self, email: OutgoingEmail) {
        let mailer = self.clone();
        self.tasks.spawn(async move {
            for attempt in 1..=ATTEMPTS {
                match mailer.transport.deliver(&email).await {
                    Ok(()) => return,
                    // Once the service is stopping (its requests done), no pause for a retry:
                    // it would only hold the exit up (`Server::run` waits for this task).
                    Err(e) if attempt < ATTEMPTS && !mailer.tasks.is_closed() => {
                        tracing::warn!(error = %e, attempt, subject = %email.subject, "sending email failed; retrying");
                        tokio::time::sleep(mailer.retry_delay * 2u32.pow(attempt - 1)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, subject = %email.subject, "sending email failed; giving up");
                        return;
                    }
                }
            }
        });
    }
}

fn build_message(from: &Mailbox, email: &OutgoingEmail) -> anyhow::Result<Message> {
    let to: Mailbox = email.to.parse().context("recipient is not an address")?;
    Ok(Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&email.subject)
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))?)
}

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[async_trait]
impl Transport for Smtp {
    async fn deliver(&self, email: &OutgoingEmail) -> anyhow::Result<()> {
        self.transport
            .send(build_message(&self.from, email)?)
            .await?;
        Ok(())
    }
}

/// Writes each message as an `.eml` file, readable by its owner only (it holds a live
/// link); for development without a mail server.
struct Outbox {
    dir: PathBuf,
    from: Mailbox,
    /// Whether each message's link goes to the log: not in production, where anyone who
    /// reads the log could use a reset link.
    log_links: bool,
}

#[async_trait]
impl Transport for Outbox {
    async fn deliver(&self, email: &OutgoingEmail) -> anyhow::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let name = format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            uuid::Uuid::new_v4().simple()
        );
        let path = self.dir.join(name);
        let mut file = tokio::fs::OpenOptions::new();
        file.write(true).create_new(true);
        #[cfg(unix)]
        file.mode(0o600);
        let message = build_message(&self.from, email)?.formatted();
        let mut file = file.open(&path).await?;
        file.write_all(&message).await?;
        // Tokio's file hands the bytes to a background write: flushing waits for it, so a
        // full disk fails this delivery (and its retries) instead of going unnoticed.
        file.flush().await?;
        let link = if self.log_links {
            email.link.as_deref().unwrap_or("-")
        } else {
            "(not logged in production)"
        };
        tracing::info!(path = %path.display(), link, subject = %email.subject, "email written to the outbox (no SMTP_URL set)");
        Ok(())
    }
}
