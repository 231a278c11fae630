//! Public ids: what the management API names a key or a management key by (`key_…`,
//! `mk_…`): random, opaque, stable, and never the database's sequence (which would tell how
//! many keys exist and invite guessing).

use rand::distr::{Alphanumeric, SampleString};

/// Random base62 characters after the prefix (24 × log2(62) ≈ 143 bits).
const RANDOM_LEN: usize = 24;

pub(crate) fn generate(prefix: &str) -> String {
    let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let mut s = String::with_capacity(prefix.len() + RANDOM_LEN);
    s.push_str(prefix);
    Alphanumeric.append_string(&mut rng, &mut s, RANDOM_LEN);
    s
}

/// `prefix` then 1 to 64 ASCII letters and digits: every id made by [`generate`] or by the
/// migrations' backfill (hex). Anything else cannot exist, so it is a 404 before any SQL
/// runs (and no NUL or control character can reach the database).
fn parse(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

macro_rules! public_id {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                $name(generate($prefix))
            }

            pub fn parse(s: &str) -> Option<Self> {
                parse($prefix, s).then(|| $name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

public_id!(KeyPublicId, "key_", "An API key's public id, `key_…`.");
public_id!(
    ManagementKeyPublicId,
    "mk_",
    "A management key's public id, `mk_…`."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = KeyPublicId::generate();
        assert!(a.as_str().starts_with("key_"));
        assert_eq!(a.as_str().len(), 28);
        assert_eq!(KeyPublicId::parse(a.as_str()), Some(a.clone()));
        assert_ne!(a, KeyPublicId::generate());
        assert!(ManagementKeyPublicId::parse(ManagementKeyPublicId::generate().as_str()).is_some());
    }

    #[test]
    fn impossible_ids_are_refused() {
        for bad in [
            "",
            "key_",
            "1",
            "mk_abc",
            "key_a\0b",
            "key_ab-c",
            "key_é",
            &format!("key_{}", "a".repeat(65)),
        ] {
            assert!(KeyPublicId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(KeyPublicId::parse("key_0123abcdef").is_some());
    }
}
