//! Integration tests: the real service over HTTP, on SQLite and PostgreSQL.

mod helpers;
mod process;
mod relay;
mod schema;

mod abuse;
mod admin;
mod admin_cli;
mod cli;
mod connections;
mod contract;
mod docs;
mod email;
mod extending;
mod housekeeping;
mod import;
mod instances;
mod keys;
mod lifecycle;
mod links;
mod login_records;
mod logs;
mod mail;
mod me;
mod metrics;
mod notes;
mod outage;
mod pages;
mod protection;
#[cfg(target_os = "linux")]
mod scheduling;
mod session_cache;
mod shutdown;
mod signup;
mod token;
