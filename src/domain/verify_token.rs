//! Email verification tokens: the secret in the link a new account is sent.
//!
//! 32 bytes from the OS CSPRNG, base64url without padding (43 characters), so the link needs
//! no escaping. Like API tokens, only the SHA-256 is stored (256 bits of entropy: a fast hash
//! is right), and a token is single use and expires (`store::email_tokens`).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::token::{hash_str, TokenHash};

/// The length of every token this server issues.
pub const VERIFY_TOKEN_LEN: usize = 43;

/// A verification token. Exists between generation and the mail, and while a link is being
/// checked. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyToken(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the verification link is malformed")]
pub struct MalformedVerifyToken;

impl VerifyToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngExt::fill(
            &mut rand::rand_core::UnwrapErr(rand::rngs::SysRng),
            &mut bytes[..],
        );
        VerifyToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Exactly the shape [`VerifyToken::generate`] makes: 43 characters of the base64url
    /// alphabet. Anything else (a cut link, NUL or control characters, a megabyte) is refused
    /// here, before any SQL.
    pub fn parse(input: &str) -> Result<Self, MalformedVerifyToken> {
        let ok = input.len() == VERIFY_TOKEN_LEN
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| VerifyToken(input.to_owned()))
            .ok_or(MalformedVerifyToken)
    }

    /// The secret itself, for the link in the mail and the confirmation form.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database stores and looks up.
    pub fn hash(&self) -> TokenHash {
        hash_str(&self.0)
    }
}

impl fmt::Debug for VerifyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = VerifyToken::generate();
        let b = VerifyToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), VERIFY_TOKEN_LEN);
        assert_eq!(VerifyToken::parse(a.expose()), Ok(a.clone()));
        assert_eq!(a.hash(), VerifyToken::parse(a.expose()).unwrap().hash());
        assert_eq!(a.hash().0.len(), 64, "hex SHA-256");
    }

    #[test]
    fn refuses_anything_else() {
        let good = VerifyToken::generate().expose().to_owned();
        for bad in [
            String::new(),
            good[..42].to_owned(),
            format!("{good}A"),
            format!("{}\0", &good[..42]),
            format!("{}\n", &good[..42]),
            format!("{}=", &good[..42]),
            format!("{}é", &good[..41]),
            "A".repeat(1 << 20),
        ] {
            assert_eq!(
                VerifyToken::parse(&bad),
                Err(MalformedVerifyToken),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_is_redacted() {
        let t = VerifyToken::generate();
        assert_eq!(format!("{t:?}"), "VerifyToken(***)");
    }
}
