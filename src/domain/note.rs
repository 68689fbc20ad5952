const MAX_CHARS: usize = 10_000;

/// The text of a note: not blank, at most 10,000 characters.
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
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}
