//! Credentials: password hashing and access tokens. No HTTP and no SQL in here.

mod hashing_threads;
pub mod keys;
pub mod login;
pub mod password;
pub mod recovery;
pub mod session;
pub mod sessions;
pub mod throttle;
pub mod token;
mod working_memory;

pub use password::{HasherBusy, PasswordHasher, Verification};
pub use token::{AccessClaims, TokenKeys};
