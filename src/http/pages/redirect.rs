/// Where to go after signing in. Only a relative path on this site is followed; anything
/// else (`https://evil.example`, `//evil.example`, `/\evil.example`, `javascript:`) goes to
/// the default, so the login form cannot be used as an open redirect.
pub fn safe_next(next: Option<&str>, default: &'static str) -> String {
    let Some(next) = next.map(str::trim).filter(|n| !n.is_empty()) else {
        return default.into();
    };
    let relative = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if relative {
        next.into()
    } else {
        default.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_followed() {
        assert_eq!(safe_next(Some("/admin"), "/account"), "/admin");
        assert_eq!(
            safe_next(Some("/notes?x=1#top"), "/account"),
            "/notes?x=1#top"
        );
        assert_eq!(safe_next(None, "/account"), "/account");
        assert_eq!(safe_next(Some(""), "/account"), "/account");
    }

    #[test]
    fn anything_leaving_the_site_goes_to_the_default() {
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "evil.example/admin",
            "/\tevil",
            "/a\\b",
            "http:/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad), "/account"), "/account", "{bad:?}");
        }
    }
}
