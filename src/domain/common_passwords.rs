//! The 100,000 most common passwords of a public breach corpus (`assets/README.md` says which),
//! embedded compressed and unpacked on first use. NIST SP 800-63B asks to refuse passwords
//! found in such lists.

use std::collections::HashSet;
use std::io::Read;
use std::sync::LazyLock;

static COMPRESSED: &[u8] = include_bytes!("../../assets/common-passwords.txt.gz");

/// Lower-cased entries; shorter ones are kept too, since the minimum length is configurable.
static COMMON: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut text = String::new();
    flate2::read::GzDecoder::new(COMPRESSED)
        .read_to_string(&mut text)
        .expect("the bundled password list is valid gzip and UTF-8");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_lowercase)
        .collect()
});

/// Whether the password, ignoring case, is one of the list's.
pub fn is_common(password: &str) -> bool {
    COMMON.contains(&password.to_lowercase())
}

/// How many passwords the list holds (after folding case).
#[cfg(test)]
fn count() -> usize {
    COMMON.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_large_and_holds_the_usual_suspects() {
        assert!(count() > 90_000, "{}", count());
        for common in [
            "password",
            "Password1",
            "password123",
            "qwertyuiop",
            "iloveyou",
        ] {
            assert!(is_common(common), "{common}");
        }
        for rare in ["correct horse battery", "glacier-ink-7-lantern"] {
            assert!(!is_common(rare), "{rare}");
        }
    }
}
