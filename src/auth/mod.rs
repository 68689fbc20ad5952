//! Credentials: password hashing and access tokens. No HTTP and no SQL in here.

pub mod keys;
pub mod login;
pub mod password;
pub mod session;
pub mod sessions;
pub mod token;

pub use password::{PasswordHasher, Verification};
pub use token::{AccessClaims, TokenKeys};
