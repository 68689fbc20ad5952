//! Gatehouse: an authentication service (sign-up, OAuth2 password login, JWT bearer tokens,
//! browser sessions) that runs on an embedded SQLite file or on PostgreSQL.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod email;
pub mod error;
pub mod housekeeping;
pub mod http;
pub mod metrics;
pub(crate) mod scheduling;
pub mod server;
pub mod store;
pub mod telemetry;
