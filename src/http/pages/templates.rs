//! The page templates (askama, HTML-escaped by default) and the data each one shows.

use askama::Template;

use super::PageContext;
use crate::store::{Note, User};

/// The navigation bar: who is signed in and the token for the log-out button.
pub struct Nav {
    pub username: Option<String>,
    pub csrf_token: String,
}

impl Nav {
    pub fn anonymous() -> Self {
        Self {
            username: None,
            csrf_token: String::new(),
        }
    }

    pub fn from_context(ctx: &PageContext) -> Self {
        Self {
            username: ctx.user.as_ref().map(|s| s.user.username.clone()),
            csrf_token: ctx.csrf_token.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "landing.html")]
pub struct LandingPage {
    pub nav: Nav,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub nav: Nav,
    pub username: String,
    pub next: String,
    pub error: Option<String>,
    pub notice: Option<&'static str>,
    /// The password was right but the email address is not confirmed yet.
    pub unverified: bool,
}

/// Field values and messages of the sign-up form, kept when it is shown again.
#[derive(Default)]
pub struct SignupForm {
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub username_error: Option<String>,
    pub email_error: Option<String>,
    pub full_name_error: Option<String>,
    pub password_error: Option<String>,
}

#[derive(Template)]
#[template(path = "signup.html")]
pub struct SignupPage {
    pub nav: Nav,
    pub form: SignupForm,
    pub rules: PasswordRules,
    /// An address is required when accounts must confirm one (`REQUIRE_EMAIL_VERIFICATION`).
    pub email_required: bool,
}

impl SignupPage {
    pub fn new(state: &crate::http::AppState, ctx: &PageContext, form: SignupForm) -> Self {
        Self {
            nav: Nav::from_context(ctx),
            form,
            rules: PasswordRules::new(state),
            email_required: state.config.mail.require_verification,
        }
    }

    /// The ids of what describes the email field: its help when required, its error if any.
    pub fn email_described_by(&self) -> Option<String> {
        let ids: Vec<&str> = [
            self.email_required.then_some("email-help"),
            self.form.email_error.as_ref().map(|_| "email-error"),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!ids.is_empty()).then(|| ids.join(" "))
    }
}

/// The password rules a form shows as text (so they work without JavaScript); the script
/// `/static/password-hint.js` adds a live hint from the input's `data-` attributes.
pub struct PasswordRules {
    pub min_chars: usize,
    pub text: String,
}

impl PasswordRules {
    pub fn new(state: &crate::http::AppState) -> Self {
        let policy = state.config.abuse.password_policy;
        Self {
            min_chars: policy.min_chars,
            text: policy.describe(),
        }
    }
}

/// One line of the recent activity on the account page.
pub struct ActivityRow {
    pub what: &'static str,
    pub when: String,
    pub from: String,
}

impl ActivityRow {
    pub fn new(event: &crate::store::Event) -> Self {
        let agent: String = event
            .user_agent
            .as_deref()
            .unwrap_or("unknown browser")
            .chars()
            .take(80)
            .collect();
        Self {
            what: crate::audit::EventKind::describe(&event.kind),
            when: event.created_at.format("%-d %b %Y, %H:%M UTC").to_string(),
            from: format!(
                "{agent} · {}",
                event.ip.as_deref().unwrap_or("unknown address")
            ),
        }
    }
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub nav: Nav,
    pub user: &'a User,
    pub member_since: String,
    pub sessions: Vec<SessionRow>,
    pub notice: Option<&'static str>,
    pub password_error: Option<String>,
    pub email_error: Option<String>,
    /// The address typed into the email form that was refused, shown again.
    pub email_draft: String,
    pub rules: PasswordRules,
    pub activity: Vec<ActivityRow>,
}

/// One line of the session list on the account page.
pub struct SessionRow {
    pub id: i64,
    pub what: &'static str,
    pub started: String,
    pub last_used: String,
    pub from: String,
    pub current: bool,
}

impl SessionRow {
    pub fn new(session: &crate::store::Session, current: i64) -> Self {
        let when = |t: chrono::DateTime<chrono::Utc>| t.format("%-d %b %Y, %H:%M UTC").to_string();
        let what = match (session.kind.as_str(), session.persistent) {
            ("api", _) => "API login",
            (_, true) => "Browser (remembered)",
            _ => "Browser",
        };
        let agent = session.user_agent.as_deref().unwrap_or("unknown browser");
        let agent: String = agent.chars().take(80).collect();
        Self {
            id: session.id,
            what,
            started: when(session.created_at),
            last_used: when(session.last_used_at),
            from: format!(
                "{agent} · {}",
                session.ip.as_deref().unwrap_or("unknown address")
            ),
            current: session.id == current,
        }
    }
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage<'a> {
    pub nav: Nav,
    pub username: &'a str,
}

#[derive(Template)]
#[template(path = "notes.html")]
pub struct NotesPage {
    pub nav: Nav,
    pub notes: Vec<Note>,
    pub draft: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub nav: Nav,
    pub title: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "forgot_password.html")]
pub struct ForgotPasswordPage {
    pub nav: Nav,
    pub notice: Option<&'static str>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "reset_password.html")]
pub struct ResetPasswordPage {
    pub nav: Nav,
    pub token: String,
    /// The link's account (for password managers and the live hint); `None` when the link is
    /// used, expired or unknown, and the page offers a new one instead of the form.
    pub account: Option<User>,
    pub rules: PasswordRules,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "verify_email.html")]
pub struct VerifyEmailPage {
    pub nav: Nav,
    pub token: String,
}
