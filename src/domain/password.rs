use std::fmt;

use super::common_passwords;

/// The least any configuration may ask for (NIST SP 800-63B: at least 8; 15 when the password
/// is the only factor).
pub const MIN_CHARS: usize = 8;
/// The most a password may have; longer ones are refused, never truncated.
pub const MAX_CHARS: usize = 128;

const COMMON_MESSAGE: &str = "This password is too common: it is in lists of leaked passwords \
                              that attackers try first. Please choose another";

/// What a new password is checked against beyond `Password::new`: the configured minimum
/// length, and the words of the account it is for (NIST SP 800-63B rev. 4, section 3.1.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// At least `MIN_CHARS`, at most `MAX_CHARS` (`PASSWORD_MIN_LENGTH`).
    pub min_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: MIN_CHARS,
        }
    }
}

/// The account a new password is for: it must contain neither its name nor its address.
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordContext<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
}

impl PasswordPolicy {
    /// Checks a new password for this account; the message says why it was refused.
    pub fn check(&self, raw: String, context: PasswordContext<'_>) -> Result<Password, String> {
        let count = raw.chars().count();
        if count < self.min_chars {
            return Err(format!(
                "Password must be at least {} characters long",
                self.min_chars
            ));
        }
        let folded = raw.to_lowercase();
        let username = context.username.trim().to_lowercase();
        if username.chars().count() >= 3 && folded.contains(&username) {
            return Err("Password must not contain your username".into());
        }
        if let Some(email) = context.email.map(|e| e.trim().to_lowercase()) {
            let local = email.split('@').next().unwrap_or_default();
            let contains_email = !email.is_empty() && folded.contains(&email);
            if contains_email || (local.chars().count() >= 3 && folded.contains(local)) {
                return Err("Password must not contain your email address".into());
            }
        }
        Password::new(raw)
    }

    /// The rules as a sentence, for forms and documentation.
    pub fn describe(&self) -> String {
        format!(
            "{} to {MAX_CHARS} characters, any kind (a long phrase is best). Not a commonly used \
             password, and not containing your username or email address.",
            self.min_chars
        )
    }
}

/// A password in clear text. Its `Debug` never shows it, so it cannot leak into a log line.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// A new password (sign-up, change, reset): 8 to 128 characters, any Unicode, no
    /// composition rules, and not one of the 100,000 most common (NIST SP 800-63B). The
    /// configured minimum and the account's own words are `PasswordPolicy::check`'s.
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
        if common_passwords::is_common(&raw) {
            return Err(COMMON_MESSAGE.into());
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
        assert!(Password::new("lantern8".into()).is_ok());
        assert!(
            Password::new("ééééééé".into()).is_err(),
            "7 characters, 14 bytes"
        );
        assert!(Password::new("x".repeat(128)).is_ok());
        assert!(Password::new("x".repeat(129)).is_err());
    }

    #[test]
    fn common_passwords_are_refused_with_the_reason() {
        for common in ["password", "Password123", "iloveyou1", "qwerty123"] {
            let err = Password::new(common.into()).unwrap_err();
            assert!(err.contains("too common"), "{common}: {err}");
        }
    }

    #[test]
    fn policy_refuses_the_account_s_own_words_and_short_passwords() {
        let policy = PasswordPolicy { min_chars: 12 };
        let alice = PasswordContext {
            username: "Alice",
            email: Some("wonder@example.com"),
        };
        let err = |raw: &str| policy.check(raw.into(), alice).unwrap_err();
        assert_eq!(
            err("lantern-77"),
            "Password must be at least 12 characters long"
        );
        assert_eq!(
            err("xxALICExx-lantern"),
            "Password must not contain your username"
        );
        assert_eq!(
            err("my wonder lantern"),
            "Password must not contain your email address"
        );
        assert!(err("password1234").contains("too common"));
        assert!(policy.check("glacier ink lantern".into(), alice).is_ok());
        let no_email = PasswordContext {
            username: "bob",
            email: None,
        };
        assert!(
            policy
                .check("a bob in the lantern".into(), no_email)
                .is_err()
        );
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
            let allowed = (MIN_CHARS..=MAX_CHARS).contains(&count)
                && !common_passwords::is_common(&raw);
            prop_assert_eq!(accepted, allowed);
            prop_assert_eq!(Password::attempt(raw.clone()).is_some(), raw.len() <= MAX_CHARS * 4);
        }

        #[test]
        fn debug_never_shows_it(raw in "[a-z]{8,40}") {
            let password = Password::attempt(raw.clone()).unwrap();
            let shown = format!("{password:?}");
            prop_assert!(!shown.contains(&raw));
        }
    }
}
