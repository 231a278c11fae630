//! Text from requests, made safe for both databases before any SQL sees it.
//!
//! PostgreSQL `text` cannot hold U+0000 (SQLite can), and control characters in a stored
//! string end up in the dashboard, CSV exports and logs. So every string a request carries
//! is either *refused* at the edge (filters, ids: [`has_control`], [`GenerationId`]) or, where
//! it must be recorded as what the client asked for (a usage row's requested model), turned
//! into a [`client_label`]: control characters escaped, length bounded. Nothing else from a
//! request is stored as text.

/// Characters of a client label kept; the rest is cut and marked with `…`.
pub const LABEL_MAX_CHARS: usize = 100;

/// Whether `s` holds a control character (C0, DEL, C1: NUL among them).
pub fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A client-supplied string as it may be stored and shown: control characters written as
/// `\u{..}` escapes (so `"\u0000"` is recorded visibly, never as a NUL), at most
/// [`LABEL_MAX_CHARS`] characters of the original, with `…` when cut.
pub fn client_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(4 * LABEL_MAX_CHARS));
    for (i, c) in s.chars().enumerate() {
        if i == LABEL_MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A usage row's public id as a request may name it (`/usage/{id}`,
/// `/api/v1/generation/{id}`): `gen-` and then ASCII letters, digits and `-`, at most 64
/// characters in all. Anything else cannot exist, so it is a 404 before any SQL runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationId(String);

impl GenerationId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("gen-")?;
        let ok = !rest.is_empty()
            && s.len() <= Self::MAX_LEN
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| GenerationId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_escape_controls_and_bound_length() {
        assert_eq!(client_label("openai/gpt-4o"), "openai/gpt-4o");
        assert_eq!(client_label("\u{0}"), "\\u{0}");
        assert_eq!(client_label("a\nb\u{7f}\u{85}"), "a\\u{a}b\\u{7f}\\u{85}");
        let long = "é".repeat(500);
        let l = client_label(&long);
        assert_eq!(l.chars().count(), LABEL_MAX_CHARS + 1);
        assert!(l.ends_with('…'));
        assert!(!has_control(&client_label("\u{0}\u{1}\u{9f}")));
    }

    #[test]
    fn generation_ids() {
        assert!(GenerationId::parse("gen-1764500000000-abcDEF0123456789").is_some());
        for bad in [
            "",
            "gen-",
            "gen-a\u{0}b",
            "gen-a/b",
            "gen-a b",
            "xyz-abc",
            "gen-ü",
            &format!("gen-{}", "a".repeat(61)),
        ] {
            assert!(GenerationId::parse(bad).is_none(), "{bad:?}");
        }
        assert!(GenerationId::parse(&format!("gen-{}", "a".repeat(60))).is_some());
    }
}
