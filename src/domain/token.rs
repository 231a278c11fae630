//! Tokens: the public format is a contract and never changes once shipped.
//!
//! Two kinds share one format and differ only in their prefix: inference keys (`lr-sk-`,
//! [`ApiToken`]) for the gateway, and management keys (`lr-mk-`, [`ManagementToken`]) for
//! the management API. Each kind is refused where the other belongs (`wrong_key_type`).
//!
//! `lr-sk-` (or `lr-mk-`) + 43 base62 characters from the OS CSPRNG (43 × log2(62) ≈ 256 bits) + 6 base62
//! characters encoding the CRC32 of everything before them. 55 characters in all.
//!
//! The checksum lets the gateway reject typos and truncations without touching the database,
//! and lets secret scanners recognise a real token offline. Only the SHA-256 of the token is
//! stored: tokens carry 256 bits of entropy, so a fast hash is the right tool (argon2 is for
//! passwords people choose) and keeps verification in microseconds.

use std::fmt;
use std::marker::PhantomData;

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "lr-sk-";
pub const MANAGEMENT_PREFIX: &str = "lr-mk-";
/// Every kind's prefix has this length, so every token has the same length and layout.
const PREFIX_LEN: usize = 6;
const RANDOM_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
pub const TOKEN_LEN: usize = PREFIX_LEN + RANDOM_LEN + CHECKSUM_LEN;
/// Characters shown before the ellipsis: the scheme prefix plus four random characters.
const DISPLAY_PREFIX_LEN: usize = PREFIX_LEN + 4;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a kind of token is for, named by its prefix.
pub trait TokenKind {
    /// Exactly [`PREFIX_LEN`] characters.
    const PREFIX: &'static str;
    const NAME: &'static str;
}

/// An inference key: the gateway's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inference;
impl TokenKind for Inference {
    const PREFIX: &'static str = TOKEN_PREFIX;
    const NAME: &'static str = "ApiToken";
}

/// A management key: the management API (`/api/v1/keys`, `/usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Management;
impl TokenKind for Management {
    const PREFIX: &'static str = MANAGEMENT_PREFIX;
    const NAME: &'static str = "ManagementToken";
}

/// A full secret token of kind `K`. Exists only between generation and the one-time
/// reveal, and while a request is being authenticated. `Debug` never prints it.
pub struct Token<K: TokenKind>(String, PhantomData<K>);

/// An inference key's token (`lr-sk-`).
pub type ApiToken = Token<Inference>;
/// A management key's token (`lr-mk-`).
pub type ManagementToken = Token<Management>;

impl<K: TokenKind> Clone for Token<K> {
    fn clone(&self) -> Self {
        Token(self.0.clone(), PhantomData)
    }
}
impl<K: TokenKind> PartialEq for Token<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: TokenKind> Eq for Token<K> {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the API key is malformed")]
    Malformed,
    #[error("the API key's checksum does not match: it was mistyped or truncated")]
    BadChecksum,
}

/// SHA-256 of a token, hex encoded: what the database stores and indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

impl<K: TokenKind> Token<K> {
    /// A new token from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let mut s = String::with_capacity(TOKEN_LEN);
        s.push_str(K::PREFIX);
        Alphanumeric.append_string(&mut rng, &mut s, RANDOM_LEN);
        let checksum = checksum_chars(s.as_bytes());
        s.push_str(std::str::from_utf8(&checksum).expect("base62 is ascii"));
        Token(s, PhantomData)
    }

    /// Checks shape and checksum; no database involved.
    pub fn parse(input: &str) -> Result<Self, TokenError> {
        let bytes = input.as_bytes();
        if bytes.len() != TOKEN_LEN
            || !input.starts_with(K::PREFIX)
            || !bytes[PREFIX_LEN..].iter().all(u8::is_ascii_alphanumeric)
        {
            return Err(TokenError::Malformed);
        }
        let (body, checksum) = bytes.split_at(TOKEN_LEN - CHECKSUM_LEN);
        if checksum_chars(body) != checksum {
            return Err(TokenError::BadChecksum);
        }
        Ok(Token(input.to_owned(), PhantomData))
    }

    /// The secret itself, for the one-time reveal.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        hash_str(&self.0)
    }

    /// `lr-sk-Ab3d`: stored, and shown before the ellipsis.
    pub fn display_prefix(&self) -> &str {
        &self.0[..DISPLAY_PREFIX_LEN]
    }

    pub fn last_four(&self) -> &str {
        &self.0[TOKEN_LEN - 4..]
    }

    /// As shown after the reveal: [`masked`].
    pub fn masked(&self) -> String {
        masked(self.display_prefix(), self.last_four())
    }
}

/// Hashes a token string that already passed [`ApiToken::parse`] (the gateway's hot path
/// avoids an allocation by hashing the header's bytes directly).
pub fn hash_str(token: &str) -> TokenHash {
    TokenHash(hex::encode(Sha256::digest(token.as_bytes())))
}

/// 32 random letters and digits (about 190 bits, from the OS's CSPRNG through `rand`): CSRF
/// tokens, one-time form ids, nonces. Not an API token (those are [`Token`]s).
pub fn random_token() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// The masked form shown everywhere after creation: `lr-sk-Ab3d…x9Qz`.
pub fn masked(prefix: &str, last_four: &str) -> String {
    format!("{prefix}…{last_four}")
}

fn checksum_chars(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

impl<K: TokenKind> fmt::Debug for Token<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}…)", K::NAME, self.display_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_the_public_contract() {
        let t = ApiToken::generate();
        let s = t.expose();
        assert_eq!(s.len(), 55);
        assert!(s.starts_with("lr-sk-"));
        assert!(s[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(ApiToken::parse(s).unwrap(), t);
        assert_eq!(t.display_prefix(), &s[..10]);
        assert_eq!(t.last_four(), &s[51..]);
        assert_eq!(t.hash().0.len(), 64);
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(ApiToken::generate(), ApiToken::generate());
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let t = ApiToken::generate();
        let mut s = t.expose().to_owned().into_bytes();
        s[20] = if s[20] == b'a' { b'b' } else { b'a' };
        let s = String::from_utf8(s).unwrap();
        assert_eq!(ApiToken::parse(&s), Err(TokenError::BadChecksum));
    }

    #[test]
    fn malformed_inputs() {
        let t = ApiToken::generate();
        let s = t.expose();
        for bad in [
            "",
            "lr-sk-",
            &s[..54],
            &format!("{s}x"),
            &s.replacen("lr-sk-", "lr-pk-", 1),
            &format!("\"{}\"", &s[..53]),
            &s.replacen(&s[10..11], "-", 1),
        ] {
            assert!(ApiToken::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_does_not_leak() {
        let t = ApiToken::generate();
        assert!(!format!("{t:?}").contains(&t.expose()[10..]));
    }

    #[test]
    fn management_tokens_share_the_format_not_the_prefix() {
        let m = ManagementToken::generate();
        let s = m.expose();
        assert_eq!(s.len(), 55);
        assert!(s.starts_with("lr-mk-"));
        assert_eq!(ManagementToken::parse(s).unwrap(), m);
        assert_eq!(m.display_prefix(), &s[..10]);
        assert_eq!(ApiToken::parse(s), Err(TokenError::Malformed));
        let a = ApiToken::generate();
        assert_eq!(
            ManagementToken::parse(a.expose()),
            Err(TokenError::Malformed)
        );
        assert!(format!("{m:?}").starts_with("ManagementToken(lr-mk-"));
        assert!(!format!("{m:?}").contains(&s[10..]));
    }

    #[test]
    fn masked_shows_prefix_and_last_four() {
        assert_eq!(masked("lr-sk-Ab3d", "x9Qz"), "lr-sk-Ab3d…x9Qz");
    }
}
