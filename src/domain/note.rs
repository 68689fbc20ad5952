const MAX_CHARS: usize = 10_000;

/// The text of a note: not blank, at most 10,000 characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteText(String);

impl NoteText {
    pub fn parse(raw: String) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("Note text must not be empty".into());
        }
        if raw.chars().count() > MAX_CHARS {
            return Err(format!(
                "Note text must be at most {MAX_CHARS} characters long"
            ));
        }
        // PostgreSQL refuses to store NUL: refused here, on both backends alike. Other control
        // characters are left alone: notes imported from the tutorial's database may hold them.
        if raw.contains('\0') {
            return Err("Note text must not contain the NUL character".into());
        }
        Ok(Self(raw))
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
    fn any_text_but_blank_too_long_or_with_a_nul() {
        assert!(NoteText::parse("milk\tbread\r\neggs\u{1b}\n".into()).is_ok());
        assert!(NoteText::parse(" \n".into()).is_err());
        assert!(NoteText::parse("é".repeat(10_001)).is_err());
        assert_eq!(
            NoteText::parse("milk\0".into()).unwrap_err(),
            "Note text must not contain the NUL character"
        );
    }
}
