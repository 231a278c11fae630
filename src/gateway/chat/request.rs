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
    pub max_tokens: Option<u64>,
    /// Completions asked for (`n`): the output bound is held once per choice.
    pub choices: u64,
    pub body: serde_json::Map<String, Value>,
    pub body_len: usize,
}

impl ChatRequest {
    /// Checked non-empty by [`parse_chat`].
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

pub fn parse_chat(raw: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::invalid_request(format!("The body is not valid JSON: {e}.")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid_request("The body must be a JSON object."));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid_request(
                "`model` must be a non-empty string.",
            ))
        }
        None => return Err(ApiError::invalid_request("`model` is required.")),
    };
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
        max_tokens,
        choices,
        body,
        body_len: raw.len(),
    })
}

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
