//! Account email addresses, normalised so that one person has one account.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("enter your email address")]
    Empty,
    #[error("enter a valid email address, like name@example.com")]
    Invalid,
}

impl Email {
    /// Trims and lowercases. Deliberately lenient (one `@`, a dot in the domain, no spaces or
    /// control characters, at most 254 bytes): the only real check is delivering mail.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        let valid = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && match s.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if !valid {
            return Err(EmailError::Invalid);
        }
        Ok(Email(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(Email::parse(" "), Err(EmailError::Empty));
        for bad in [
            "ann",
            "ann@",
            "@x.io",
            "a@b",
            "a b@c.io",
            "a@@b.io",
            "a@b.",
            "a\u{0}@b.io",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad:?}");
        }
    }
}
