//! Account passwords: policy here, hashing in `crate::web::auth`.

use std::fmt;

pub const MIN_CHARS: usize = 10;
pub const MAX_BYTES: usize = 1024;

/// A password that meets the policy. `Debug` never prints it.
#[derive(Clone)]
pub struct Password(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("use at least 10 characters")]
    TooShort,
    #[error("use at most 1024 bytes")]
    TooLong,
}

impl Password {
    /// Not trimmed: spaces are legitimate password characters. The upper bound keeps argon2's
    /// input (and the cost of a hostile request) bounded.
    pub fn parse(input: String) -> Result<Self, PasswordError> {
        if input.len() > MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
        if input.chars().count() < MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        Ok(Password(input))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert_eq!(
            Password::parse("short".into()).unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            Password::parse("x".repeat(1025)).unwrap_err(),
            PasswordError::TooLong
        );
        assert!(Password::parse("ten chars!".into()).is_ok());
        assert!(Password::parse("é".repeat(10)).is_ok());
        assert!(
            !format!("{:?}", Password::parse("secret-password".into()).unwrap()).contains("secret")
        );
    }
}
