use std::fmt;

use unicode_normalization::UnicodeNormalization;

const MIN_CHARS: usize = 3;
const MAX_CHARS: usize = 64;

/// A username: 3 to 64 letters, digits, `.`, `_` or `-`, after Unicode NFKC normalisation.
///
/// `as_str` is what the user chose (normalised); `key` is the case-folded form the database
/// keeps unique, so `Alice` and `alice` (or `ＡＬＩＣＥ`) cannot both exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let display: String = raw.nfkc().collect();
        let count = display.chars().count();
        if count < MIN_CHARS {
            return Err(format!(
                "Username must be at least {MIN_CHARS} characters long"
            ));
        }
        if count > MAX_CHARS {
            return Err(format!(
                "Username must be at most {MAX_CHARS} characters long"
            ));
        }
        if let Some(bad) = display.chars().find(|&c| {
            !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-')) || is_invisible_letter(c)
        }) {
            return Err(format!(
                "Username may only contain letters, digits, '.', '_' and '-' (found {bad:?})"
            ));
        }
        let key = Self::fold(&display);
        Ok(Self { display, key })
    }

    /// The lookup key for any string a client sends as a username, valid or not.
    /// Lets login look up users without rejecting names created under older rules.
    ///
    /// NUL, which no stored name holds (PostgreSQL refuses it in text), becomes U+FFFD, which
    /// no valid name holds either: such a lookup finds no one on both backends, instead of
    /// failing on one.
    pub fn fold(raw: &str) -> String {
        let key = fold_case(raw);
        if key.contains('\0') {
            return key.replace('\0', "\u{FFFD}");
        }
        key
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Letters that draw nothing: the Hangul fillers, the only code points that are both
/// alphanumeric and default-ignorable (Unicode's `Default_Ignorable_Code_Point`; the others
/// are refused as punctuation or marks anyway). `alice` with one of them appended looks
/// exactly like `alice`, so such a name could pass for another in a list or a message.
fn is_invisible_letter(c: char) -> bool {
    matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

fn fold_case(raw: &str) -> String {
    // ASCII is already in NFKC and stays so when lowercased: the common case, and on every
    // bearer request, so it skips the normalisation passes.
    if raw.is_ascii() {
        raw.to_ascii_lowercase()
    } else {
        fold_unicode(raw)
    }
}

fn fold_unicode(raw: &str) -> String {
    // NFKC again after lowercasing: lowercasing can produce non-normalised sequences.
    raw.nfkc().flat_map(char::to_lowercase).nfkc().collect()
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_folds_to_a_character_no_name_holds() {
        assert_eq!(Username::fold("Al\0ice"), "al\u{fffd}ice");
        assert_eq!(Username::fold("Ä\0"), "ä\u{fffd}");
        assert!(Username::parse("al\u{fffd}ice").is_err());
    }

    #[test]
    fn accepts_letters_digits_and_punctuation() {
        for ok in [
            "foo",
            "alice.smith",
            "bob_42",
            "x-y-z",
            "élodie",
            "名前です",
        ] {
            assert!(Username::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn refuses_bad_lengths_and_characters() {
        for bad in [
            "",
            "ab",
            "has space",
            "semi;colon",
            "a/b",
            "emoji😀",
            &"x".repeat(65),
            // Invisible letters: each looks like plain "alice" (the first two are U+1160
            // after NFKC).
            "alice\u{3164}",
            "alice\u{FFA0}",
            "ali\u{115F}ce",
            "alice\u{1160}",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn keys_fold_case_and_compatibility_forms() {
        let a = Username::parse("Alice").unwrap();
        let b = Username::parse("ＡＬＩＣＥ").unwrap();
        assert_eq!(a.key(), "alice");
        assert_eq!(a.key(), b.key());
        assert_eq!(b.as_str(), "ALICE");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_string_is_judged_without_panicking(raw in "\\PC{0,80}|.{0,80}") {
            if let Ok(name) = Username::parse(&raw) {
                let count = name.as_str().chars().count();
                prop_assert!((MIN_CHARS..=MAX_CHARS).contains(&count));
                prop_assert_eq!(name.key(), Username::fold(name.as_str()));
                // A valid name stays valid (normalising twice changes nothing).
                prop_assert_eq!(Username::parse(name.as_str()), Ok(name.clone()));
            }
        }

        #[test]
        fn folding_is_stable(raw in ".{0,80}") {
            let key = Username::fold(&raw);
            prop_assert_eq!(Username::fold(&key), key);
        }

        #[test]
        fn ascii_shortcut_folds_as_unicode_does(raw in "[\\x00-\\x7f]{0,80}") {
            prop_assert_eq!(fold_case(&raw), fold_unicode(&raw));
        }
    }
}
