use std::fmt;

const MIN_CHARS: usize = 8;
const MAX_CHARS: usize = 128;

/// A password in clear text. Its `Debug` never shows it, so it cannot leak into a log line.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// A new password (sign-up, change): 8 to 128 characters, any Unicode, no composition
    /// rules (NIST SP 800-63B).
    pub fn new(raw: String) -> Result<Self, String> {
        let count = raw.chars().count();
        if count < MIN_CHARS {
            return Err(format!(
                "Password must be at least {MIN_CHARS} characters long"
            ));
        }
        if count > MAX_CHARS {
            return Err(format!(
                "Password must be at most {MAX_CHARS} characters long"
            ));
        }
        Ok(Self(raw))
    }

    /// A password typed at login: never judged against the rules (they may have changed
    /// since it was set), only bounded so nobody makes us hash a megabyte.
    pub fn attempt(raw: String) -> Option<Self> {
        (raw.len() <= MAX_CHARS * 4).then_some(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_counted_in_characters() {
        assert!(Password::new("short".into()).is_err());
        assert!(Password::new("password".into()).is_ok());
        assert!(
            Password::new("ééééééé".into()).is_err(),
            "7 characters, 14 bytes"
        );
        assert!(Password::new("x".repeat(128)).is_ok());
        assert!(Password::new("x".repeat(129)).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let p = Password::new("hunter2hunter2".into()).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_string_is_judged_by_its_length_in_characters(raw in ".{0,200}") {
            let count = raw.chars().count();
            let accepted = Password::new(raw.clone()).is_ok();
            prop_assert_eq!(accepted, (MIN_CHARS..=MAX_CHARS).contains(&count));
            prop_assert_eq!(Password::attempt(raw.clone()).is_some(), raw.len() <= MAX_CHARS * 4);
        }

        #[test]
        fn debug_never_shows_it(raw in "[a-z]{8,40}") {
            let password = Password::new(raw.clone()).unwrap();
            let shown = format!("{password:?}");
            prop_assert!(!shown.contains(&raw));
        }
    }
}
