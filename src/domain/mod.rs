//! Validated values. Once a `Username` or a `Password` exists, it obeys the rules; handlers
//! and the store never re-check them.

mod common_passwords;
mod email;
mod full_name;
mod note;
mod password;
mod username;

pub use common_passwords::is_common as is_common_password;
pub use email::Email;
pub use full_name::FullName;
pub use note::NoteText;
pub use password::{
    MAX_CHARS as PASSWORD_MAX_CHARS, MIN_CHARS as PASSWORD_MIN_CHARS, Password, PasswordContext,
    PasswordPolicy,
};
pub use username::Username;
