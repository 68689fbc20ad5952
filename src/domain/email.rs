use std::fmt;

/// An email address in the syntax the mailer checks (RFC 5321; `john..doe@example.com` or
/// `a,b@example.com` is refused here, not by a message that fails in the background), with
/// a dot in the domain. Non-ASCII addresses pass, as RFC 6531 allows; a server without
/// SMTPUTF8 may still refuse them. Only a delivered message proves an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let invalid = || "Email address is not valid".to_string();
        if trimmed.len() > 254 || trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = trimmed.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@');
        if local.is_empty() || !domain_ok || trimmed.parse::<lettre::Address>().is_err() {
            return Err(invalid());
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_checks() {
        assert!(Email::parse("a@example.com").is_ok());
        assert_eq!(Email::parse(" a@b.io ").unwrap().as_str(), "a@b.io");
        for good in [
            "first.last+tag@sub.example.co.uk",
            "o'brien@example.ie",
            "ünï@exämple.de",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be taken");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.com",
            "a@b",
            "a b@c.com",
            "a@b@c.com",
            "a@.com",
            // What the mailer refuses: consecutive or leading dots, a comma, a bad domain.
            "john..doe@example.com",
            ".a@example.com",
            "a,b@example.com",
            "a@ex..com",
            "a@-example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
