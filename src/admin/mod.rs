//! Administration: what superusers do to accounts (from the console, the `/admin/` API or the
//! command line), and the import of the tutorial's database.

pub mod actions;
pub mod command;
pub mod import;

pub use actions::{AdminAction, apply, perform};
