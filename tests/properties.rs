//! Hostile input never panics and never leaks: property tests over the parsers that sit at
//! the edge (the Authorization header, the token format, credit amounts, the key form, the
//! Usage filter query and chat-completion JSON bodies).
//!
//! Each property states what a correct parser must do for *every* input, and is checked
//! against an oracle written independently of the code under test where one is practical
//! (the token checksum is re-derived here from the public format in `domain::token`'s doc).

use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use lowrouter::catalogue::Catalogue;
use lowrouter::domain::key_form::{KeyFormInput, NAME_MAX_CHARS};
use lowrouter::domain::{ApiToken, Credits, TokenError};
use lowrouter::gateway::auth::bearer_token;
use lowrouter::gateway::chat::parse_chat;
use proptest::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// The token format, re-derived from `domain::token`'s doc: `lr-sk-` + 43 base62 + 6 base62 of CRC32.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn oracle_checksum(body: &[u8]) -> String {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

/// The oracle: is `s` a well-formed token with a matching checksum?
fn oracle_valid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 55
        && s.starts_with("lr-sk-")
        && b[6..].iter().all(u8::is_ascii_alphanumeric)
        && oracle_checksum(&b[..49]) == s[49..]
}

fn token_from_body(body: &str) -> String {
    let head = format!("lr-sk-{body}");
    let sum = oracle_checksum(head.as_bytes());
    format!("{head}{sum}")
}

/// 43 base62 characters: the random part of a token.
fn token_body() -> impl Strategy<Value = String> {
    "[0-9A-Za-z]{43}"
}

fn valid_token() -> impl Strategy<Value = String> {
    token_body().prop_map(|b| token_from_body(&b))
}

/// Strings near the token format: valid tokens with one edit, truncations, extensions,
/// wrong prefixes, unicode look-alikes, plus arbitrary text.
fn near_token() -> impl Strategy<Value = String> {
    prop_oneof![
        // Substitute one character with anything (ASCII or not).
        (valid_token(), 0usize..55, any::<char>()).prop_map(|(t, i, c)| {
            let mut chars: Vec<char> = t.chars().collect();
            chars[i] = c;
            chars.into_iter().collect()
        }),
        // Delete one character.
        (valid_token(), 0usize..55).prop_map(|(t, i)| {
            let mut s = t;
            s.remove(i);
            s
        }),
        // Insert one character.
        (valid_token(), 0usize..56, any::<char>()).prop_map(|(t, i, c)| {
            let mut s = t;
            s.insert(i, c);
            s
        }),
        // Swap two characters.
        (valid_token(), 0usize..55, 0usize..55).prop_map(|(t, i, j)| {
            let mut b = t.into_bytes();
            b.swap(i, j);
            String::from_utf8(b).unwrap()
        }),
        // Truncate.
        (valid_token(), 0usize..55).prop_map(|(t, n)| t[..n].to_owned()),
        // Another prefix.
        (valid_token(), "[a-zA-Z-]{0,8}").prop_map(|(t, p)| format!("{p}{}", &t[6..])),
        // Right shape, random checksum.
        (token_body(), "[0-9A-Za-z]{6}").prop_map(|(b, c)| format!("lr-sk-{b}{c}")),
        any::<String>(),
        "\\PC{0,80}",
    ]
}

// ---------------------------------------------------------------------------------------
// The Authorization header.

/// Every message the header parser may answer with: constants, never derived from input.
const HEADER_MESSAGES: &[&str] = &[
    "Missing Authorization header. Send `Authorization: Bearer <your LowRouter API key>`.",
    "Send exactly one Authorization header.",
    "Malformed Authorization header: expected `Bearer ` followed by the API key, with no quotes or extra spaces.",
    "The API key's checksum does not match: it was mistyped or truncated. Copy it again.",
];

fn headers_of(values: &[Vec<u8>]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    for v in values {
        // Bytes a client could not send as a header value (CR, LF, NUL…) are refused by the
        // HTTP layer before the parser ever sees them.
        h.append(AUTHORIZATION, HeaderValue::from_bytes(v).ok()?);
    }
    Some(h)
}

/// Header values: near-valid `Bearer` lines, case and spacing variants, raw bytes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (
            prop_oneof![
                Just("Bearer ".to_owned()),
                Just("bearer ".to_owned()),
                Just("BEARER ".to_owned()),
                Just("Bearer  ".to_owned()),
                Just("Bearer\t".to_owned()),
                Just(" Bearer ".to_owned()),
                Just("Bearer".to_owned()),
                Just("Basic ".to_owned()),
                Just("Token ".to_owned()),
                Just(String::new()),
                "[ -~]{0,10}",
            ],
            prop_oneof![valid_token(), near_token()],
            prop_oneof![
                Just(String::new()),
                Just(" ".to_owned()),
                Just("\t".to_owned()),
                Just("\"".to_owned()),
                Just(",".to_owned()),
                "[ -~]{0,5}",
            ],
        )
            .prop_map(|(p, t, s)| format!("{p}{t}{s}").into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => valid_token().prop_map(|t| format!("Bearer \"{t}\"").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `usage.cost` is a JSON number: written from an f64, its text must still be exactly
    /// the amount, as a decimal (to the micro-credit, up to 10^9 credits).
    #[test]
    fn credits_as_json_numbers_are_exact(micros in 0i64..1_000_000_000_000_000) {
        let c = Credits::from_micros(micros);
        let written = serde_json::to_string(&serde_json::Value::Number(c.json_number())).unwrap();
        prop_assert_eq!(decimal_micros(&written), Some(i128::from(micros)), "{}", written);
    }

    /// The parser agrees with the oracle on every string, never panics, and its errors
    /// never contain the input.
    #[test]
    fn token_parse_matches_the_format(s in near_token()) {
        let r = ApiToken::parse(&s);
        prop_assert_eq!(r.is_ok(), oracle_valid(&s), "{:?}", s);
        match r {
            Ok(t) => prop_assert_eq!(t.expose(), s.as_str()),
            Err(e) => {
                let shown = format!("{e} {e:?}");
                prop_assert!(!(s.len() >= 8 && shown.contains(&s)), "error echoes input: {}", shown);
                // A token of the right shape with a wrong checksum says so; anything else
                // is malformed.
                let shaped = s.len() == 55
                    && s.starts_with("lr-sk-")
                    && s.as_bytes()[6..].iter().all(u8::is_ascii_alphanumeric);
                let want = if shaped { TokenError::BadChecksum } else { TokenError::Malformed };
                prop_assert_eq!(e, want);
            }
        }
    }

    /// Every token built to the format parses (the parser is not stricter than the contract).
    #[test]
    fn every_well_formed_token_parses(t in valid_token()) {
        prop_assert!(ApiToken::parse(&t).is_ok());
        // And any change to one character of it is caught offline, by shape or by checksum:
        // CRC32 detects every single-byte error and the base62 encoding of 32 bits in six
        // characters is injective.
    }

    #[test]
    fn one_substitution_is_always_caught(t in valid_token(), i in 6usize..55, c in "[0-9A-Za-z]") {
        let mut b = t.clone().into_bytes();
        prop_assume!(b[i] != c.as_bytes()[0]);
        b[i] = c.as_bytes()[0];
        let s = String::from_utf8(b).unwrap();
        prop_assert_eq!(ApiToken::parse(&s), Err(TokenError::BadChecksum));
    }

    #[test]
    fn one_adjacent_swap_is_always_caught(t in valid_token(), i in 6usize..54) {
        let mut b = t.into_bytes();
        prop_assume!(b[i] != b[i + 1]);
        b.swap(i, i + 1);
        let s = String::from_utf8(b).unwrap();
        prop_assert_eq!(ApiToken::parse(&s), Err(TokenError::BadChecksum));
    }

    #[test]
    fn token_parse_never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..120)) {
        let s = String::from_utf8_lossy(&b);
        let _ = ApiToken::parse(&s);
    }

    /// The header parser accepts exactly one header that is exactly `Bearer <valid token>`,
    /// and its messages are constants (so they cannot echo the header).
    #[test]
    fn bearer_header_accepts_only_the_exact_form(values in proptest::collection::vec(header_value(), 0..3)) {
        let Some(h) = headers_of(&values) else { return Ok(()); };
        match bearer_token(&h) {
            Ok(t) => {
                prop_assert_eq!(values.len(), 1);
                let expected = format!("Bearer {t}");
                prop_assert_eq!(values[0].as_slice(), expected.as_bytes());
                prop_assert!(oracle_valid(t), "accepted an invalid token {:?}", t);
            }
            Err(e) => {
                prop_assert_eq!(e.status.as_u16(), 401);
                prop_assert_eq!(e.code.as_str(), "invalid_api_key");
                prop_assert!(HEADER_MESSAGES.contains(&e.message.as_str()), "unexpected message {:?}", e.message);
                let body = e.body().to_string();
                for v in &values {
                    let v = String::from_utf8_lossy(v);
                    let secret = v.strip_prefix("Bearer ").unwrap_or(&v);
                    if secret.len() >= 8 {
                        prop_assert!(!body.contains(secret), "error echoes the header: {}", body);
                    }
                    // The random part of a near-valid token (what would identify it).
                    if secret.len() >= 30 && secret.is_char_boundary(10) && secret.is_char_boundary(30) {
                        prop_assert!(!body.contains(&secret[10..30]));
                    }
                }
            }
        }
    }

    /// A valid header is accepted (the test above could pass vacuously otherwise).
    #[test]
    fn bearer_header_accepts_a_valid_token(t in valid_token()) {
        let h = headers_of(&[format!("Bearer {t}").into_bytes()]).unwrap();
        prop_assert_eq!(bearer_token(&h).ok(), Some(t.as_str()));
        // Two copies of a valid header are still refused.
        let h2 = headers_of(&[format!("Bearer {t}").into_bytes(), format!("Bearer {t}").into_bytes()]).unwrap();
        prop_assert!(bearer_token(&h2).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// Credits.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn credits_parse_never_panics(s in prop_oneof![any::<String>(), "[0-9. +\\-eE,_]{0,40}", "\\PC{0,40}"]) {
        if let Ok(c) = Credits::parse(&s) {
            prop_assert!(c.micros() >= 0, "{:?} -> {:?}", s, c);
            // Whatever parsed prints back to the same amount.
            prop_assert_eq!(Credits::parse(&c.exact()), Ok(c));
        }
    }

    /// Every amount in range survives a trip through its exact text, both directions.
    #[test]
    fn credits_round_trip(micros in 0i64..=999_999_999_999_999) {
        let c = Credits::from_micros(micros);
        let s = c.exact();
        prop_assert_eq!(Credits::parse(&s), Ok(c));
        prop_assert_eq!(s.parse::<Credits>(), Ok(c));
        // The short forms the dashboard shows parse back to an amount no larger
        // (display truncates, never overstates).
        let shown = Credits::parse(&c.to_string()).unwrap();
        prop_assert!(shown <= c && c.micros() - shown.micros() < 10_000);
        prop_assert_eq!(Credits::parse(&c.display_precise()), Ok(c));
        // JSON: a six-place decimal string, and back.
        let j = serde_json::to_value(c).unwrap();
        prop_assert_eq!(serde_json::from_value::<Credits>(j).unwrap(), c);
    }

    /// Typed decimals parse to exactly what they say.
    #[test]
    fn credits_decimal_text(whole in 0u64..1_000_000_000, frac in "[0-9]{0,6}", zeros in 0usize..20, pad in "[ ]{0,2}") {
        let s = format!("{pad}{}{whole}{}{frac}{pad}", "0".repeat(zeros), if frac.is_empty() { "" } else { "." });
        let mut micros = whole as i64 * 1_000_000;
        for (i, d) in frac.bytes().enumerate() {
            micros += i64::from(d - b'0') * 10i64.pow(5 - i as u32);
        }
        prop_assert_eq!(Credits::parse(&s), Ok(Credits::from_micros(micros)), "{:?}", s);
    }

    #[test]
    fn credits_cost_never_overflows_or_goes_negative(tokens in any::<u64>(), price in 0i64..=i64::MAX) {
        let c = Credits::cost_of(tokens, Credits::from_micros(price));
        prop_assert!(c.micros() >= 0);
        if tokens > 0 && price > 0 {
            prop_assert!(c.micros() > 0, "no request is free by rounding");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The New key / Edit key form.

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<String>(),
        "\\PC{0,100}",
        "[\\x00-\\x1f\\x7f\u{80}-\u{9f}\u{200b}-\u{200f}\u{202a}-\u{202e}a ]{0,40}",
        Just("<script>alert(1)</script>".to_owned()),
        Just("\"><img src=x onerror=alert(1)>".to_owned()),
        Just("'; drop table api_keys; --".to_owned()),
        (any::<char>(), 0usize..200_000).prop_map(|(c, n)| c.to_string().repeat(n)),
        Just("9".repeat(100_000)),
        Just("0.".to_owned() + &"1".repeat(50_000)),
        Just("lowrouter/echo".to_owned()),
        Just("eu-west".to_owned()),
        Just("2999-12-31".to_owned()),
        Just("+99999-01-01".to_owned()),
        Just("-0001-01-01".to_owned()),
        Just("2026-02-30".to_owned()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[0-9]{0,12}(\\.[0-9]{0,8})?",
    ]
}

fn key_form() -> impl Strategy<Value = KeyFormInput> {
    (
        hostile_text(),
        proptest::collection::vec(hostile_text(), 0..5),
        hostile_text(),
        hostile_text(),
        hostile_text(),
        hostile_text(),
    )
        .prop_map(
            |(name, models, region, daily, monthly, expires)| KeyFormInput {
                name,
                models,
                region,
                daily_limit: daily,
                monthly_limit: monthly,
                expires,
                rpm_limit: String::new(),
                concurrency_limit: String::new(),
                disable_after_days: String::new(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    /// Whatever is typed, the parse never panics, and what it accepts is valid by the rules
    /// of the form.
    #[test]
    fn key_form_never_panics_and_accepts_only_valid(input in key_form(), day in 0i64..40_000) {
        let cat = Catalogue::load(None).unwrap();
        let today = time::Date::from_julian_day(2_440_588 + day as i32).unwrap();
        match input.parse(&cat, today) {
            Ok(spec) => {
                prop_assert!(!spec.name.is_empty());
                prop_assert_eq!(spec.name.trim(), spec.name.as_str());
                prop_assert!(spec.name.chars().count() <= NAME_MAX_CHARS);
                prop_assert!(!spec.name.chars().any(char::is_control));
                for m in &spec.models {
                    prop_assert!(cat.model(m).is_some());
                }
                if let Some(r) = &spec.region {
                    prop_assert!(cat.regions.contains(r));
                }
                for l in [spec.daily_limit, spec.monthly_limit].into_iter().flatten() {
                    prop_assert!(l.micros() > 0);
                }
                if let (Some(d), Some(m)) = (spec.daily_limit, spec.monthly_limit) {
                    prop_assert!(d <= m);
                }
                if let Some(d) = spec.expires_on {
                    prop_assert!(d >= today);
                    let _ = spec.expires_at_ms();
                }
                // Edit pre-fills the form from the spec; it parses back to the same spec.
                let again = KeyFormInput::from_spec(&spec).parse(&cat, today);
                prop_assert_eq!(again.ok(), Some(spec));
            }
            Err(errors) => prop_assert!(!errors.is_empty()),
        }
    }

    /// The Usage page's query string: any values, never a panic, text filters bounded.
    #[test]
    fn usage_filter_never_panics(
        q in proptest::collection::hash_map(
            prop_oneof![Just("key".to_owned()), Just("from".to_owned()), Just("to".to_owned()),
                        Just("model".to_owned()), Just("status".to_owned()), Just("before".to_owned()),
                        Just("region".to_owned()), Just("provider".to_owned()), any::<String>()],
            hostile_text(), 0..8)
    ) {
        let (_, filter, _, _) = lowrouter::web::usage::parse_filter(&q);
        for t in [&filter.key_name, &filter.model, &filter.provider, &filter.region].into_iter().flatten() {
            prop_assert!(t.chars().count() <= 200);
        }
        if let (Some(f), Some(t)) = (filter.from_ms, filter.to_ms) {
            prop_assert!(f < t);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Chat-completion bodies.

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,20}".prop_map(Value::String),
        Just(json!("user")),
        Just(json!("lowrouter/echo")),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("role".to_owned()),
                    Just("content".to_owned()),
                    Just("include_usage".to_owned()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects with the request's fields present, missing, or of the wrong type.
fn chat_body() -> impl Strategy<Value = Value> {
    let field = |v: BoxedStrategy<Value>| proptest::option::of(v);
    (
        field(prop_oneof![Just(json!("lowrouter/echo")), Just(json!("")), json_value()].boxed()),
        field(
            prop_oneof![
                Just(json!([{"role": "user", "content": "hi"}])),
                Just(json!([])),
                proptest::collection::vec(json_value(), 0..4).prop_map(Value::Array),
                json_value(),
            ]
            .boxed(),
        ),
        field(prop_oneof![any::<bool>().prop_map(Value::Bool), json_value()].boxed()),
        field(json_value().boxed()),
        field(prop_oneof![(0u64..10_000).prop_map(Value::from), json_value()].boxed()),
        field(prop_oneof![(0u64..10_000).prop_map(Value::from), json_value()].boxed()),
    )
        .prop_map(|(model, messages, stream, options, max, max2)| {
            let mut o = serde_json::Map::new();
            for (k, v) in [
                ("model", model),
                ("messages", messages),
                ("stream", stream),
                ("stream_options", options),
                ("max_tokens", max),
                ("max_completion_tokens", max2),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            Value::Object(o)
        })
}

fn check_chat(raw: &[u8]) -> Result<(), TestCaseError> {
    match parse_chat(raw) {
        Ok(c) => {
            prop_assert!(!c.model.is_empty());
            prop_assert!(!c.messages().is_empty());
            prop_assert!(c.messages().iter().all(|m| m["role"].is_string()));
            prop_assert!(c.max_tokens.is_none_or(|m| m > 0));
            prop_assert_eq!(c.body_len, raw.len());
        }
        Err(e) => {
            prop_assert_eq!(e.status.as_u16(), 400);
            prop_assert_eq!(e.code.as_str(), "invalid_request");
            prop_assert!(e.message.len() < 200, "bounded message: {}", e.message);
            let text = String::from_utf8_lossy(raw);
            if text.len() >= 16 {
                prop_assert!(!e.message.contains(text.as_ref()), "error echoes the body");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn chat_never_panics_on_bytes(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_chat(&raw)?;
    }

    #[test]
    fn chat_never_panics_on_json(v in json_value()) {
        check_chat(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn chat_checks_types(v in chat_body()) {
        let raw = serde_json::to_vec(&v).unwrap();
        let ok = parse_chat(&raw).is_ok();
        // The oracle: the fields the chat API requires (`model`, `messages`), with the right types.
        let model_ok = v["model"].as_str().is_some_and(|m| !m.is_empty());
        let messages_ok = v["messages"].as_array().is_some_and(|m| {
            !m.is_empty() && m.iter().all(|x| x.get("role").is_some_and(Value::is_string))
        });
        let stream_ok = matches!(v.get("stream"), None | Some(Value::Null) | Some(Value::Bool(_)));
        let max_ok = |k: &str| match v.get(k) {
            None | Some(Value::Null) => true,
            Some(x) => x.as_u64().is_some_and(|n| n > 0),
        };
        let want = model_ok && messages_ok && stream_ok && max_ok("max_tokens") && max_ok("max_completion_tokens");
        prop_assert_eq!(ok, want, "{}", v);
        check_chat(&raw)?;
    }

    /// Bytes spliced into a valid body: truncations and single-byte corruptions.
    #[test]
    fn chat_never_panics_on_corrupted_bodies(cut in 0usize..80, at in 0usize..80, b in any::<u8>()) {
        let good = br#"{"model":"lowrouter/echo","messages":[{"role":"user","content":"hello"}],"stream":true}"#;
        check_chat(&good[..cut.min(good.len())])?;
        let mut bad = good.to_vec();
        let at = at.min(bad.len() - 1);
        bad[at] = b;
        check_chat(&bad)?;
    }
}

/// serde_json stops at 128 levels: 10,000 nested arrays (or objects) are an error, not a
/// stack overflow (which would abort this whole test binary).
#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let n = 10_000;
    let arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    let unclosed = "[".repeat(1_000_000);
    let inside = format!(
        r#"{{"model":"lowrouter/echo","messages":[{{"role":"user","content":{}{}}}]}}"#,
        "[".repeat(n),
        "]".repeat(n)
    );
    let inside_obj = format!(
        r#"{{"model":"lowrouter/echo","messages":[{{"role":"user","content":"x"}}],"stream_options":{}null{}}}"#,
        "{\"include_usage\":".repeat(n),
        "}".repeat(n)
    );
    for (what, body) in [
        ("arrays", &arrays),
        ("objects", &objects),
        ("unclosed", &unclosed),
        ("inside messages", &inside),
        ("inside stream_options", &inside_obj),
    ] {
        let e = match parse_chat(body.as_bytes()) {
            Ok(_) => panic!("{what}: 10,000 levels accepted"),
            Err(e) => e,
        };
        assert_eq!(e.status.as_u16(), 400, "{what}");
        assert!(
            e.message.contains("recursion limit") || e.message.contains("EOF"),
            "{what}: {}",
            e.message
        );
    }
    // Just under the limit is fine and the echo model can plan it without recursion trouble.
    let ok = format!(
        r#"{{"model":"lowrouter/echo","messages":[{{"role":"user","content":{}"x"{}}}]}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let c = parse_chat(ok.as_bytes()).expect("100 levels parse");
    let _ = lowrouter::gateway::echo::plan(c.messages(), c.max_tokens);
}

/// Big but legal bodies parse; the size limit is the HTTP layer's job (413, tested in
/// tests/api/security.rs), not the parser's.
#[test]
fn huge_bodies_parse_or_fail_cleanly() {
    let big = "é".repeat(400_000);
    let body = json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": big}], "max_tokens": 1});
    let raw = serde_json::to_vec(&body).unwrap();
    let c = parse_chat(&raw).unwrap();
    // max_tokens 1 = 4 bytes; truncation must land on a char boundary ("é" is 2 bytes).
    let plan = lowrouter::gateway::echo::plan(c.messages(), c.max_tokens);
    assert_eq!(plan.reply, "éé");
    let many = json!({"model": "lowrouter/echo", "messages": vec![json!({"role": "user", "content": "x"}); 50_000]});
    assert!(parse_chat(&serde_json::to_vec(&many).unwrap()).is_ok());
    let huge_number = format!(
        r#"{{"model":"m","messages":[{{"role":"user"}}],"max_tokens":1{}}}"#,
        "0".repeat(10_000)
    );
    assert!(parse_chat(huge_number.as_bytes()).is_err());
}

/// A JSON number's exact value in millionths, if it is a whole number of them
/// (`"0.001234"`, `"1e-6"`, `"12.5"`).
fn decimal_micros(text: &str) -> Option<i128> {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: i128 = format!("{whole}{frac}").parse().ok()?;
    let shift = exp - frac.len() as i32 + 6;
    if shift >= 0 {
        Some(digits * 10i128.pow(shift as u32))
    } else {
        let div = 10i128.pow((-shift) as u32);
        (digits % div == 0).then(|| digits / div)
    }
}
