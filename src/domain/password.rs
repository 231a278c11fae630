//! Account passwords: policy here, hashing in `crate::password_hashing`.
//!
//! The policy follows NIST SP 800-63B (5.1.1.2): a minimum length, no composition rules
//! (no "one digit and one symbol"), and a refusal of passwords that are known to be chosen
//! often or that are guessable from context, each with the reason shown on the form:
//! - a list of commonly used passwords: the 49k most common of the zxcvbn project's list
//!   (MIT; `common-passwords.txt`, compiled into the binary: ~380 KB), compared ignoring
//!   case, and also after stripping digits and symbols from both ends, so a common word
//!   dressed up (`Sunshine2024!`) is refused like the word;
//! - the account's email address, or its name part (before the `@`) when it has at least
//!   [`MIN_CONTEXT_CHARS`] characters, anywhere in the password;
//! - the service's name, `lowrouter`;
//! - one character repeated (ten spaces included) and straight runs (`1234567890`,
//!   `abcdefghij`, `9876543210`).

use std::fmt;
use std::sync::OnceLock;

use super::Email;

pub const MIN_CHARS: usize = 10;
pub const MAX_BYTES: usize = 1024;
/// An email's name part shorter than this (`a@x.io`) is too common a substring to refuse.
pub const MIN_CONTEXT_CHARS: usize = 3;
pub const SERVICE_NAME: &str = "lowrouter";

static COMMON: &str = include_str!("common-passwords.txt");

/// A password that meets the policy. `Debug` never prints it.
#[derive(Clone)]
pub struct Password(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("use at least 10 characters")]
    TooShort,
    #[error("use at most 1024 bytes")]
    TooLong,
    #[error("this is one of the most commonly used passwords, so it is among the first an attacker tries: choose another")]
    Common,
    #[error("don't use your email address or its name in your password")]
    ContainsEmail,
    #[error("don't use the name of this service in your password")]
    ContainsServiceName,
    #[error("don't use a single repeated character or a simple sequence like 1234567890")]
    Repetitive,
}

impl Password {
    /// A new password for the account `email` (`None` when the form's email was not valid:
    /// the other rules still apply). Not trimmed: spaces are legitimate password
    /// characters. The upper bound keeps argon2's input (and the cost of a hostile request)
    /// bounded.
    pub fn parse(input: String, email: Option<&Email>) -> Result<Self, PasswordError> {
        if input.len() > MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
        if input.chars().count() < MIN_CHARS {
            return Err(PasswordError::TooShort);
        }
        let lower = input.to_lowercase();
        if is_repetitive(&lower) {
            return Err(PasswordError::Repetitive);
        }
        if email.is_some_and(|e| mentions_email(&lower, e)) {
            return Err(PasswordError::ContainsEmail);
        }
        if lower.contains(SERVICE_NAME) {
            return Err(PasswordError::ContainsServiceName);
        }
        if is_common(&lower) {
            return Err(PasswordError::Common);
        }
        Ok(Password(input))
    }

    /// A password the server made up itself (random), checked for length only.
    pub fn generated(input: String) -> Self {
        Password(input)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn common_list() -> &'static [&'static str] {
    static LIST: OnceLock<Vec<&'static str>> = OnceLock::new();
    // The file is sorted by bytes, which is `str`'s order: binary search needs no sort here.
    LIST.get_or_init(|| COMMON.lines().collect())
}

fn in_list(s: &str) -> bool {
    common_list().binary_search(&s).is_ok()
}

/// `lower` is already lowercased.
fn is_common(lower: &str) -> bool {
    if in_list(lower) || in_list(lower.trim()) {
        return true;
    }
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    // A short core ("abc" in "abc1234567") is not a word worth refusing on its own.
    core.chars().count() >= 4 && core != lower && in_list(core)
}

fn mentions_email(lower: &str, email: &Email) -> bool {
    let email = email.as_str();
    let local = email.split('@').next().unwrap_or(email);
    lower.contains(email) || (local.chars().count() >= MIN_CONTEXT_CHARS && lower.contains(local))
}

/// All one character (all spaces included), or a straight run up or down by one code point.
fn is_repetitive(lower: &str) -> bool {
    let chars: Vec<char> = lower.chars().collect();
    if chars.iter().all(|c| c.is_whitespace()) || chars.windows(2).all(|w| w[0] == w[1]) {
        return true;
    }
    let step = |w: &[char]| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0]));
    let first = chars.windows(2).next().map(step);
    matches!(first, Some(1) | Some(-1)) && chars.windows(2).all(|w| Some(step(w)) == first)
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Result<Password, PasswordError> {
        Password::parse(
            p.into(),
            Some(&Email::parse("ann.smith@example.com").unwrap()),
        )
    }

    #[test]
    fn length() {
        assert_eq!(parse("short").unwrap_err(), PasswordError::TooShort);
        assert_eq!(
            parse(&"x".repeat(1025)).unwrap_err(),
            PasswordError::TooLong
        );
        assert!(parse("ten chars!").is_ok());
        assert!(parse("é ü ñ ø å ").is_ok());
        assert!(!format!("{:?}", parse("secret-password").unwrap()).contains("secret"));
    }

    #[test]
    fn common_passwords() {
        for p in [
            "password12",
            "qwertyuiop",
            "PassWord12",
            "Sunshine2024!",
            "basketball",
            "1q2w3e4r5t",
        ] {
            assert_eq!(parse(p).unwrap_err(), PasswordError::Common, "{p}");
        }
        assert!(
            common_list().len() > 40_000,
            "the whole list is compiled in"
        );
        assert!(
            common_list().windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
    }

    #[test]
    fn context() {
        for p in [
            "ann.smith@example.com",
            "ANN.SMITH@example.com!",
            "my ann.smith pw",
        ] {
            assert_eq!(parse(p).unwrap_err(), PasswordError::ContainsEmail, "{p}");
        }
        assert_eq!(
            parse("LowRouter rocks").unwrap_err(),
            PasswordError::ContainsServiceName
        );
        // A one-letter name part does not make every password with an "a" invalid.
        let short = Email::parse("a@example.com").unwrap();
        assert!(Password::parse("a calm river bend".into(), Some(&short)).is_ok());
    }

    #[test]
    fn repetition() {
        for p in [
            "          ",
            "\t\t\t\t\t\t\t\t\t\t",
            "aaaaaaaaaaaa",
            "0123456789",
            "abcdefghijk",
            "9876543210",
        ] {
            assert_eq!(parse(p).unwrap_err(), PasswordError::Repetitive, "{p:?}");
        }
        assert!(parse("  a  b  c  ").is_ok(), "spaces are allowed inside");
    }

    #[test]
    fn no_composition_rules() {
        for p in [
            "correct horse battery",
            "all lowercase words here",
            "Tr0ub4dor&3 horse battery staple",
        ] {
            assert!(parse(p).is_ok(), "{p}");
        }
    }
}
