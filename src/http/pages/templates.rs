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
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub nav: Nav,
    pub user: &'a User,
    pub member_since: String,
    pub session_started: String,
    pub remembered: bool,
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
