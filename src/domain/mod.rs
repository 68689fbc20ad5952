//! Validated values. Once a `Username` or a `Password` exists, it obeys the rules; handlers
//! and the store never re-check them.

mod email;
mod note;
mod password;
mod username;

pub use email::Email;
pub use note::NoteText;
pub use password::Password;
pub use username::Username;
