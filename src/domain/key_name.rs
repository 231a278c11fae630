//! Key names as the owner sees them on the Keys page: two names that look the same there are
//! one name.
//!
//! Decisions:
//! - A name is stored in NFC, trimmed (any Unicode white space at either end), with runs of
//!   inner spaces collapsed to one (HTML shows them as one anyway).
//! - Refused, with a message naming the character: control characters (NUL included), format
//!   characters (zero-width space/joiners, bidi embeddings, overrides and isolates, BOM, soft
//!   hyphen, tags…), every space other than U+0020 (no-break, ideographic, thin…, line and
//!   paragraph separators), default-ignorable code points (Hangul fillers, variation
//!   selectors, combining grapheme joiner…), U+2800 BRAILLE PATTERN BLANK, private-use and
//!   unassigned code points. This also refuses emoji that need U+200D or U+FE0F: a key name
//!   is a label, and those are exactly the characters that make two labels look alike.
//! - [`name_skeleton`] is the Unicode TR39 confusable skeleton (`unicode-security`), with
//!   white space collapsed as above. The store keeps it beside the name, and an account's live
//!   keys may not share one: "prod", "рrod" (Cyrillic р) and "prod\u{200b}" are one name.
//!   Case is kept ("Prod" and "prod" look different), as TR39 does.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

pub const NAME_MAX_CHARS: usize = 64;

/// The owner's input as a name to store, or the message to show beside the field.
pub fn parse_name(raw: &str) -> Result<String, String> {
    parse_label(
        raw,
        "a key name",
        "Give the key a name, such as prod-server or local-dev.",
    )
}

/// A name people see in lists (a key's, a workspace's: `what`, for the message), by the
/// rules above; `empty` is the message when nothing is left after trimming.
pub fn parse_label(raw: &str, what: &str, empty: &str) -> Result<String, String> {
    let nfc: String = raw.nfc().collect();
    let trimmed = nfc.trim();
    if let Some((c, why)) = trimmed.chars().find_map(|c| refusal(c).map(|w| (c, w))) {
        return Err(format!(
            "{} cannot be used in {what} ({why}). Use letters, digits, spaces and \
             punctuation.",
            describe(c)
        ));
    }
    let name = collapse_spaces(trimmed);
    if name.is_empty() {
        return Err(empty.into());
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(format!("Use at most {NAME_MAX_CHARS} characters."));
    }
    Ok(name)
}

/// What makes names look alike reduced to one string: equal skeletons, same-looking names.
/// Defined for any string (also names stored before [`parse_name`] refused invisible
/// characters: those drop out here, as TR39 drops default-ignorable code points).
pub fn name_skeleton(name: &str) -> String {
    let mapped: String = unicode_security::skeleton(name)
        .filter(|c| !matches!(c.general_category(), GeneralCategory::Format))
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    collapse_spaces(mapped.trim())
}

fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    out
}

/// Why `c` may not appear in a key name (a class, for the message), or `None` if it may.
fn refusal(c: char) -> Option<&'static str> {
    if c == ' ' {
        return None;
    }
    match c.general_category() {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("an invisible formatting character"),
        GeneralCategory::SpaceSeparator
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => Some("a space other than the ordinary space"),
        GeneralCategory::PrivateUse | GeneralCategory::Surrogate => Some("a private-use character"),
        GeneralCategory::Unassigned => Some("not a character in this version of Unicode"),
        _ if c == '\u{2800}' || default_ignorable(c) => Some("an invisible character"),
        _ => None,
    }
}

/// Unicode's Default_Ignorable_Code_Point: exactly what TR39's skeleton drops (the crate
/// keeps its table private, and no prototype maps to nothing).
fn default_ignorable(c: char) -> bool {
    let mut buf = [0u8; 4];
    let mut skeleton = unicode_security::skeleton(c.encode_utf8(&mut buf));
    skeleton.next().is_none()
}

/// "U+202E RIGHT-TO-LEFT OVERRIDE" for the characters people meet, "U+E0041" otherwise.
fn describe(c: char) -> String {
    match NAMES.binary_search_by_key(&c, |&(k, _)| k) {
        Ok(i) => format!("U+{:04X} {}", u32::from(c), NAMES[i].1),
        Err(_) => format!("U+{:04X}", u32::from(c)),
    }
}

/// Names (or, for controls, the usual aliases) of the refused characters people paste or
/// type by accident, sorted by code point.
const NAMES: &[(char, &str)] = &[
    ('\u{0}', "NULL"),
    ('\u{7}', "BELL"),
    ('\u{8}', "BACKSPACE"),
    ('\u{9}', "CHARACTER TABULATION"),
    ('\u{A}', "LINE FEED"),
    ('\u{B}', "LINE TABULATION"),
    ('\u{C}', "FORM FEED"),
    ('\u{D}', "CARRIAGE RETURN"),
    ('\u{1B}', "ESCAPE"),
    ('\u{7F}', "DELETE"),
    ('\u{85}', "NEXT LINE"),
    ('\u{A0}', "NO-BREAK SPACE"),
    ('\u{AD}', "SOFT HYPHEN"),
    ('\u{34F}', "COMBINING GRAPHEME JOINER"),
    ('\u{61C}', "ARABIC LETTER MARK"),
    ('\u{115F}', "HANGUL CHOSEONG FILLER"),
    ('\u{1160}', "HANGUL JUNGSEONG FILLER"),
    ('\u{1680}', "OGHAM SPACE MARK"),
    ('\u{180E}', "MONGOLIAN VOWEL SEPARATOR"),
    ('\u{2000}', "EN QUAD"),
    ('\u{2001}', "EM QUAD"),
    ('\u{2002}', "EN SPACE"),
    ('\u{2003}', "EM SPACE"),
    ('\u{2004}', "THREE-PER-EM SPACE"),
    ('\u{2005}', "FOUR-PER-EM SPACE"),
    ('\u{2006}', "SIX-PER-EM SPACE"),
    ('\u{2007}', "FIGURE SPACE"),
    ('\u{2008}', "PUNCTUATION SPACE"),
    ('\u{2009}', "THIN SPACE"),
    ('\u{200A}', "HAIR SPACE"),
    ('\u{200B}', "ZERO WIDTH SPACE"),
    ('\u{200C}', "ZERO WIDTH NON-JOINER"),
    ('\u{200D}', "ZERO WIDTH JOINER"),
    ('\u{200E}', "LEFT-TO-RIGHT MARK"),
    ('\u{200F}', "RIGHT-TO-LEFT MARK"),
    ('\u{2028}', "LINE SEPARATOR"),
    ('\u{2029}', "PARAGRAPH SEPARATOR"),
    ('\u{202A}', "LEFT-TO-RIGHT EMBEDDING"),
    ('\u{202B}', "RIGHT-TO-LEFT EMBEDDING"),
    ('\u{202C}', "POP DIRECTIONAL FORMATTING"),
    ('\u{202D}', "LEFT-TO-RIGHT OVERRIDE"),
    ('\u{202E}', "RIGHT-TO-LEFT OVERRIDE"),
    ('\u{202F}', "NARROW NO-BREAK SPACE"),
    ('\u{205F}', "MEDIUM MATHEMATICAL SPACE"),
    ('\u{2060}', "WORD JOINER"),
    ('\u{2061}', "FUNCTION APPLICATION"),
    ('\u{2062}', "INVISIBLE TIMES"),
    ('\u{2063}', "INVISIBLE SEPARATOR"),
    ('\u{2064}', "INVISIBLE PLUS"),
    ('\u{2066}', "LEFT-TO-RIGHT ISOLATE"),
    ('\u{2067}', "RIGHT-TO-LEFT ISOLATE"),
    ('\u{2068}', "FIRST STRONG ISOLATE"),
    ('\u{2069}', "POP DIRECTIONAL ISOLATE"),
    ('\u{2800}', "BRAILLE PATTERN BLANK"),
    ('\u{3000}', "IDEOGRAPHIC SPACE"),
    ('\u{3164}', "HANGUL FILLER"),
    ('\u{FE0E}', "VARIATION SELECTOR-15"),
    ('\u{FE0F}', "VARIATION SELECTOR-16"),
    ('\u{FEFF}', "ZERO WIDTH NO-BREAK SPACE (BOM)"),
    ('\u{FFA0}', "HALFWIDTH HANGUL FILLER"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_table_is_sorted_and_lists_only_refused_characters() {
        assert!(NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        for &(c, name) in NAMES {
            assert!(refusal(c).is_some(), "{name} is listed but allowed");
        }
    }

    #[test]
    fn names_are_nfc_trimmed_and_inner_spaces_collapsed() {
        // "é" typed as e + combining acute becomes the one precomposed character.
        assert_eq!(parse_name("cafe\u{301}").unwrap(), "caf\u{e9}");
        assert_eq!(parse_name(" \t prod   server \n").unwrap(), "prod server");
        // White space at the ends is trimmed whatever it is, even a no-break space.
        assert_eq!(parse_name("\u{a0}prod\u{3000}").unwrap(), "prod");
        for ok in [
            "prod-server",
            "Prod",
            "ключ",
            "生产",
            "🚀 launch",
            "a/b_c.d (1)",
        ] {
            assert_eq!(parse_name(ok).unwrap(), ok);
        }
    }

    #[test]
    fn invisible_and_direction_changing_characters_are_refused_by_name() {
        let cases = [
            ("\u{202e}gnp.exe", "U+202E RIGHT-TO-LEFT OVERRIDE"),
            ("prod\u{200b}", "U+200B ZERO WIDTH SPACE"),
            ("pr\u{200d}od", "U+200D ZERO WIDTH JOINER"),
            ("a\u{2066}b", "U+2066 LEFT-TO-RIGHT ISOLATE"),
            ("\u{feff}prod", "U+FEFF ZERO WIDTH NO-BREAK SPACE (BOM)"),
            ("nul\u{0}", "U+0000 NULL"),
            ("bell\u{7}x", "U+0007 BELL"),
            ("a\tb", "U+0009 CHARACTER TABULATION"),
            ("prod\u{a0}key", "U+00A0 NO-BREAK SPACE"),
            ("prod\u{2009}key", "U+2009 THIN SPACE"),
            ("\u{3164}", "U+3164 HANGUL FILLER"),
            ("x\u{ffa0}", "U+FFA0 HALFWIDTH HANGUL FILLER"),
            ("\u{115f}\u{1160}", "U+115F HANGUL CHOSEONG FILLER"),
            ("\u{2800}", "U+2800 BRAILLE PATTERN BLANK"),
            ("x\u{34f}", "U+034F COMBINING GRAPHEME JOINER"),
            ("so\u{ad}ft", "U+00AD SOFT HYPHEN"),
            ("tag\u{e0041}", "U+E0041"),
            ("vs\u{e0100}", "U+E0100"),
            ("pua\u{e000}", "U+E000"),
            ("line\u{2028}sep", "U+2028 LINE SEPARATOR"),
        ];
        for (raw, named) in cases {
            let e = parse_name(raw).expect_err(named);
            assert!(e.starts_with(&format!("{named} cannot be used")), "{e}");
        }
    }

    #[test]
    fn empty_and_overlong_names_are_refused() {
        assert!(parse_name("   ")
            .unwrap_err()
            .contains("Give the key a name"));
        assert!(parse_name(&"n".repeat(65))
            .unwrap_err()
            .contains("at most 64"));
        // Counted after NFC: 64 decomposed "é"s are 64 characters.
        assert!(parse_name(&"e\u{301}".repeat(64)).is_ok());
    }

    #[test]
    fn names_that_look_the_same_have_one_skeleton() {
        let prod = name_skeleton("prod");
        for alike in [
            "\u{440}rod",   // Cyrillic er
            "pr\u{43e}d",   // Cyrillic o
            "prod\u{200b}", // zero-width space (names stored before it was refused)
            "\u{ff50}rod",  // fullwidth p
            "p\u{200d}rod", // zero-width joiner
            " prod ",       // spaces at the ends
            "\u{202d}prod", // bidi override
            "\u{1d429}rod", // mathematical bold p
        ] {
            assert_eq!(name_skeleton(alike), prod, "{alike:?}");
        }
        assert_eq!(name_skeleton("prod  key"), name_skeleton("prod key"));
        assert_eq!(name_skeleton("prod\u{a0}key"), name_skeleton("prod key"));
        // NFD and NFC spellings are one name.
        assert_eq!(name_skeleton("cafe\u{301}"), name_skeleton("caf\u{e9}"));
        // l / I / 1 look alike in many fonts; TR39 says so too.
        assert_eq!(name_skeleton("I0"), name_skeleton("lO"));
        for different in ["Prod", "prod2", "pro", "dev"] {
            assert_ne!(name_skeleton(different), prod, "{different}");
        }
    }
}
