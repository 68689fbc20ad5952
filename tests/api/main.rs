//! Integration tests: the real service over HTTP, on SQLite and PostgreSQL.

mod helpers;

mod cli;
mod contract;
mod me;
mod notes;
mod outage;
mod signup;
mod token;
