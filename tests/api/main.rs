//! Integration tests: the real service over HTTP, on SQLite and PostgreSQL.

mod helpers;
mod process;
mod schema;

mod cli;
mod contract;
mod docs;
mod keys;
mod lifecycle;
mod logs;
mod me;
mod metrics;
mod notes;
mod outage;
mod pages;
mod shutdown;
mod signup;
mod token;
