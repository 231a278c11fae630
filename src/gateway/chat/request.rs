//! The request's body: read within its size limit, parsed into a [`ChatRequest`] with every
//! field the gateway relies on checked (and the fields it cannot price refused).

use actix_web::web;
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::Value;

use crate::gateway::error::ApiError;

/// A parsed chat request: the fields the gateway needs, plus the JSON object to forward.
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    /// OpenRouter's `usage: {"include": true}`: the reply's `usage` carries `cost` (credits),
    /// and a stream ends with its usage chunk.
    pub include_cost: bool,
    /// OpenRouter's `models`: further models to try, in order, when the asked one's
    /// providers all fail before answering.
    pub fallbacks: Vec<String>,
    pub max_tokens: Option<u64>,
    /// Completions asked for (`n`): the output bound is held once per choice.
    pub choices: u64,
    pub body: serde_json::Map<String, Value>,
    pub body_len: usize,
    /// Tokens the prompt can count at most: what the hold assumes, and what is charged when
    /// a provider reports no usage (see [`prompt_bound`]).
    pub prompt_bound: u64,
}

/// The request's `model`: a non-empty string (what it names is resolved later).
pub(super) fn required_model(body: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Ok(m.clone()),
        Some(_) => Err(ApiError::invalid_request(
            "`model` must be a non-empty string.",
        )),
        None => Err(ApiError::invalid_request("`model` is required.")),
    }
}

/// OpenRouter's request fields that are instructions to the gateway, not to a provider
/// (a real OpenAI upstream may reject unknown top-level fields): read here, never forwarded.
/// `provider`, `transforms` and `route` are routing hints this gateway does not act on
/// (routing follows the catalogue's order within the key's region); `models`, OpenRouter's
/// fallback list, is read into [`ChatRequest::fallbacks`].
pub const GATEWAY_FIELDS: [&str; 5] = ["usage", "provider", "transforms", "route", "models"];

impl ChatRequest {
    /// The client asked for the stream's usage chunk, in OpenAI's or OpenRouter's way.
    pub fn wants_usage_chunk(&self) -> bool {
        self.include_usage || self.include_cost
    }

    /// Checked non-empty by [`parse_chat`].
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// Long on purpose: one check per request field, in the order a reader of the OpenAI
/// reference would look for them, each answering its own 400.
pub fn parse_chat(raw: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::invalid_request(format!("The body is not valid JSON: {e}.")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid_request("The body must be a JSON object."));
    };
    let model = required_model(&body)?;
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid_request("`messages` must not be empty."))
        }
        _ => {
            return Err(ApiError::invalid_request(
                "`messages` must be an array of messages.",
            ))
        }
    };
    for (i, m) in messages.iter().enumerate() {
        if !m.get("role").is_some_and(Value::is_string) {
            return Err(ApiError::invalid_request(format!(
                "`messages[{i}].role` must be a string."
            )));
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid_request("`stream` must be true or false.")),
    };
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_cost = body
        .get("usage")
        .and_then(|u| u.get("include"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let fallbacks = match body.get("models") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list))
            if list.len() <= MAX_FALLBACKS
                && list
                    .iter()
                    .all(|m| m.as_str().is_some_and(|s| !s.is_empty())) =>
        {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        }
        Some(_) => {
            return Err(ApiError::invalid_request(format!(
                "`models` must be an array of at most {MAX_FALLBACKS} model ids."
            )))
        }
    };
    let mut max_tokens = None;
    for field in ["max_completion_tokens", "max_tokens"] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => {
                    max_tokens = Some(max_tokens.map_or(n, |m: u64| m.min(n)));
                }
                _ => {
                    return Err(ApiError::invalid_request(format!(
                        "`{field}` must be a positive integer."
                    )))
                }
            },
        }
    }
    let choices = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_CHOICES).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_request(format!(
                    "`n` must be an integer from 1 to {MAX_CHOICES}."
                )))
            }
        },
    };
    refuse_unpriced_fields(&body)?;
    Ok(ChatRequest {
        model,
        stream,
        include_usage,
        include_cost,
        fallbacks,
        max_tokens,
        choices,
        prompt_bound: prompt_bound(raw.len(), &body),
        body,
        body_len: raw.len(),
    })
}

/// What one image in a prompt counts at most, in tokens: providers price images by their
/// size in pixels, not by their encoding (OpenAI's largest high-detail image is about 1,100
/// tokens, Anthropic's about 1,600), so a 1.5 MB photo is not 750,000 tokens. Generous, so
/// that the hold covers any provider's count; the charge is the provider's reported usage.
pub const IMAGE_TOKENS: u64 = 8_192;

/// The prompt bound of a body of `body_len` bytes: at least one token per two bytes plus
/// framing; each image (`image_url` part) adds [`IMAGE_TOKENS`], and one given inline (a
/// data URL) counts for that instead of its bytes.
pub fn prompt_bound(body_len: usize, body: &serde_json::Map<String, Value>) -> u64 {
    let mut bytes = body_len as u64;
    let mut images = 0u64;
    let parts = body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content")?.as_array())
        .flatten();
    for part in parts {
        let url = match part.get("image_url") {
            Some(Value::String(u)) => u.as_str(),
            Some(i) => i.get("url").and_then(Value::as_str).unwrap_or(""),
            None => continue,
        };
        // Every image counts: one behind a URL costs as much as one inline, once fetched.
        images += 1;
        if url.starts_with("data:") {
            bytes = bytes.saturating_sub(url.len() as u64);
        }
    }
    super::outcome::prompt_bound(bytes as usize) + images * IMAGE_TOKENS
}

/// The most fallback models one request may name (each may cost a provider attempt).
pub const MAX_FALLBACKS: usize = 8;

/// The most completions one request may ask for (OpenAI's own bound).
pub const MAX_CHOICES: u64 = 128;

/// Fields that make a provider bill outside what the catalogue prices (tokens in, tokens
/// out): another price tier, audio, built-in web search, predicted outputs (rejected
/// prediction tokens are billed beyond `max_tokens`). The hold could not cover them, so
/// they are refused by name. Each entry: the field, and the values that are harmless
/// (absent and `null` always are). README, "Cost-affecting request fields", lists them.
const UNPRICED_FIELDS: [(&str, &[&str]); 6] = [
    ("service_tier", &["auto", "default"]),
    ("modalities", &["text"]),
    ("audio", &[]),
    ("web_search_options", &[]),
    ("prediction", &[]),
    ("plugins", &[]),
];

fn refuse_unpriced_fields(body: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    for (field, harmless) in UNPRICED_FIELDS {
        let value = match body.get(field) {
            None | Some(Value::Null) => continue,
            Some(v) => v,
        };
        let is_harmless = |v: &Value| v.as_str().is_some_and(|s| harmless.contains(&s));
        let ok = match value {
            Value::Array(items) => items.iter().all(is_harmless),
            v => is_harmless(v),
        };
        if !ok {
            let allowed = if harmless.is_empty() {
                String::new()
            } else {
                format!(" (accepted: {})", harmless.join(", "))
            };
            return Err(ApiError::invalid_request(format!(
                "`{field}` is not supported: this gateway prices text tokens only{allowed}."
            )));
        }
    }
    Ok(())
}

/// Reads the body up to the configured limit; a larger one is a 413.
pub(crate) async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::invalid_request(
                "The request body could not be read: it was cut off or arrived too slowly.",
            )
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A key read older than this when the body has arrived is read again before the
/// reservation: the hold book remembers applied charges only for
/// [`super::holds::SETTLED_FOR`], which must cover the gap between the read and the
/// reservation; a slow upload must not stretch it. The second read also refuses a key
/// deleted while its request's body was still arriving.
pub const REREAD_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// `gen-<unix ms, 13 digits>-<16 random alphanumerics>`. Time first, so ids sort by creation
/// and each new one lands at the right edge of the unique index on `usage.generation_id`: a
/// batch of rows then writes one or two index pages instead of one random page per row.
pub fn new_generation_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "gen-{:013}-{}",
        crate::domain::time_util::now_ms().max(0),
        Alphanumeric.sample_string(&mut rand::rng(), 16)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(body: serde_json::Value) -> u64 {
        let raw = body.to_string();
        parse_chat(raw.as_bytes()).unwrap().prompt_bound
    }

    #[test]
    fn images_count_by_the_image_not_by_the_encoding() {
        let text = bound(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is this?"}]}]}));
        let inline = bound(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(1_000_000))}}]}]}));
        let linked = bound(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}));
        assert!(inline < text + IMAGE_TOKENS + 100, "{inline}");
        assert!(inline > text + IMAGE_TOKENS - 100, "{inline}");
        assert!(
            linked >= text + IMAGE_TOKENS,
            "a linked image is held too: {linked}"
        );
    }
}
