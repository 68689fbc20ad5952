const MAX_CHARS: usize = 200;

/// A person's name as they give it: trimmed, at most 200 characters, no control characters.
/// A blank name is no name (`parse` answers `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Ok(None);
        }
        if name.chars().count() > MAX_CHARS {
            return Err(format!(
                "Full name must be at most {MAX_CHARS} characters long"
            ));
        }
        // A name is one line of text. NUL, in particular, PostgreSQL refuses to store.
        if name.chars().any(char::is_control) {
            return Err("Full name must not contain control characters".into());
        }
        Ok(Some(Self(name.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_blank_is_none() {
        let name = FullName::parse("  Ada Lovelace ").unwrap().unwrap();
        assert_eq!(name.as_str(), "Ada Lovelace");
        assert_eq!(FullName::parse(" \t ").unwrap(), None);
    }

    #[test]
    fn long_names_and_control_characters_are_refused() {
        assert!(FullName::parse(&"é".repeat(200)).unwrap().is_some());
        assert!(FullName::parse(&"é".repeat(201)).is_err());
        for bad in ["Ada\0", "Ada\nLovelace", "Ada\u{7f}"] {
            assert_eq!(
                FullName::parse(bad).unwrap_err(),
                "Full name must not contain control characters"
            );
        }
    }
}
