//! Outgoing email: SMTP through lettre when `SMTP_URL` is set, otherwise an outbox folder in
//! the data directory (with the link in the log), so the flows work on a developer's machine.
//! Sending never blocks a request: messages go out from a background task with retries.

mod messages;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub use messages::{EmailKind, compose};

/// A message ready to send: both parts rendered.
#[derive(Clone)]
pub struct OutgoingEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The link it carries, logged by the outbox only (never with real SMTP).
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
}

const ATTEMPTS: u32 = 4;

impl Mailer {
    /// SMTP when a URL is given (`smtps://user:pass@host:465`, or `smtp://host:587?tls=required`
    /// for STARTTLS, or plain `smtp://host:25`), else the outbox folder.
    pub fn new(smtp_url: Option<&str>, from: &str, outbox: PathBuf) -> anyhow::Result<Self> {
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
            None => Arc::new(Outbox { dir: outbox, from }),
        };
        Ok(Self {
            transport,
            retry_delay: Duration::from_secs(2),
        })
    }

    /// Queues a message: returns at once; a failed send is retried a few times, then logged.
    pub fn send(&self, email: OutgoingEmail) {
        let mailer = self.clone();
        tokio::spawn(async move {
            for attempt in 1..=ATTEMPTS {
                match mailer.transport.deliver(&email).await {
                    Ok(()) => return,
                    Err(e) if attempt < ATTEMPTS => {
                        tracing::warn!(error = %e, attempt, subject = %email.subject, "sending email failed; retrying");
                        tokio::time::sleep(mailer.retry_delay * 2u32.pow(attempt - 1)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, subject = %email.subject, "sending email failed; giving up")
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

/// Writes each message as an `.eml` file; for development without a mail server.
struct Outbox {
    dir: PathBuf,
    from: Mailbox,
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
        tokio::fs::write(&path, build_message(&self.from, email)?.formatted()).await?;
        // No SMTP is configured: this is a developer's machine, and the link is the point.
        tracing::info!(path = %path.display(), link = email.link.as_deref().unwrap_or("-"), subject = %email.subject, "email written to the outbox (no SMTP_URL set)");
        Ok(())
    }
}
