//! The messages Gatehouse sends, each with a plain-text and an HTML part (askama templates
//! in templates/email/).

use askama::Template;

use super::OutgoingEmail;

/// What a message is about.
pub enum EmailKind<'a> {
    /// A link to choose a new password.
    PasswordReset { link: &'a str, minutes: u64 },
    /// The password was changed or reset.
    PasswordChanged,
    /// A link proving the address (at sign-up, or the new address on a change).
    VerifyEmail { link: &'a str, hours: u64 },
    /// To the old address: a change to another address was requested.
    EmailChangeRequested { new_email: &'a str },
}

#[derive(Template)]
#[template(path = "email/message.txt")]
struct TextPart<'a> {
    username: &'a str,
    kind: &'a EmailKind<'a>,
}

#[derive(Template)]
#[template(path = "email/message.html")]
struct HtmlPart<'a> {
    username: &'a str,
    kind: &'a EmailKind<'a>,
}

/// Renders a message to `to` for `username`.
pub fn compose(to: &str, username: &str, kind: EmailKind<'_>) -> anyhow::Result<OutgoingEmail> {
    let (subject, link) = match &kind {
        EmailKind::PasswordReset { link, .. } => {
            ("Reset your Gatehouse password", Some(link.to_string()))
        }
        EmailKind::PasswordChanged => ("Your Gatehouse password was changed", None),
        EmailKind::VerifyEmail { link, .. } => {
            ("Confirm your email address", Some(link.to_string()))
        }
        EmailKind::EmailChangeRequested { .. } => {
            ("A change of your email address was requested", None)
        }
    };
    Ok(OutgoingEmail {
        to: to.to_string(),
        subject: subject.to_string(),
        text: TextPart {
            username,
            kind: &kind,
        }
        .render()?,
        html: HtmlPart {
            username,
            kind: &kind,
        }
        .render()?,
        link,
    })
}
