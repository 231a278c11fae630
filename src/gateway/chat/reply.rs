//! What the gateway changes in a provider's reply on its way to the client: the model name
//! (the catalogue id that served, as OpenRouter does, not the provider's name for it, so
//! clients keyed on `response.model` see the id they asked for) and, when the client asked
//! with OpenRouter's `usage: {"include": true}`, the request's cost as `usage.cost`.
//! Replies otherwise pass through byte for byte: the model is renamed in place, without
//! parsing, and only a reply that must carry a cost is parsed and written again.

use serde_json::Value;

use crate::domain::Credits;

/// `json` with the first `"model": "<from>"` member (any whitespace around the colon) naming
/// `to` instead; None when there is no such member (nothing to change).
pub fn rename_model(json: &[u8], from: &str, to: &str) -> Option<Vec<u8>> {
    if from == to {
        return None;
    }
    // Quoted and escaped as JSON writes them (catalogue names are plain, but never assume).
    let from = serde_json::to_string(from).ok()?;
    let to = serde_json::to_string(to).ok()?;
    let key = b"\"model\"";
    let mut at = 0;
    while let Some(i) = find(&json[at..], key).map(|i| i + at) {
        let mut j = skip_ws(json, i + key.len());
        if json.get(j) == Some(&b':') {
            j = skip_ws(json, j + 1);
            if json[j..].starts_with(from.as_bytes()) {
                let mut out = Vec::with_capacity(json.len() + to.len());
                out.extend_from_slice(&json[..j]);
                out.extend_from_slice(to.as_bytes());
                out.extend_from_slice(&json[j + from.len()..]);
                return Some(out);
            }
        }
        at = i + key.len();
    }
    None
}

/// `json` (a reply or a stream chunk) with `usage.cost` set to `cost`, in credits; None when
/// it is not a JSON object with a `usage` object.
pub fn with_cost(json: &[u8], cost: Credits) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(json).ok()?;
    let usage = value.get_mut("usage")?.as_object_mut()?;
    usage.insert("cost".into(), Value::Number(cost.json_number()));
    serde_json::to_vec(&value).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_the_model_member_only() {
        let reply = br#"{"id":"x","model" : "gpt-fake","choices":[{"message":{"content":"\"model\":\"gpt-fake\""}}]}"#;
        let out = rename_model(reply, "gpt-fake", "openai/gpt-4o").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "openai/gpt-4o");
        assert_eq!(
            v["choices"][0]["message"]["content"], "\"model\":\"gpt-fake\"",
            "content is untouched"
        );
        assert!(rename_model(reply, "other", "openai/gpt-4o").is_none());
        assert!(rename_model(br#"{"model":"gpt-fake-2"}"#, "gpt-fake", "a/b").is_none());
    }

    #[test]
    fn adds_the_cost_to_the_usage_object() {
        let out = with_cost(
            br#"{"usage":{"total_tokens":3}}"#,
            Credits::from_micros(1_234),
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"usage":{"cost":0.001234,"total_tokens":3}}"#
        );
        assert!(with_cost(br#"{"choices":[]}"#, Credits::ZERO).is_none());
    }
}
