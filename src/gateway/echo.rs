//! `lowrouter/echo`: the built-in test model. It answers in-process with the last user
//! message, counts tokens with a documented rule (one token per 4 bytes of UTF-8, rounded
//! up, plus 4 per message for role framing) and streams too, so the quick start needs no
//! upstream. Because its output is known in advance, its reservation is exact.

use serde_json::{json, Value};

pub fn count_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// Text of a message's `content`: a string, or the text parts of an array.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

#[derive(Clone)]
pub struct EchoPlan {
    pub reply: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub finish_reason: &'static str,
}

pub fn plan(messages: &[Value], max_tokens: Option<u64>) -> EchoPlan {
    let prompt_tokens = messages
        .iter()
        .map(|m| count_tokens(&content_text(m.get("content").unwrap_or(&Value::Null))) + 4)
        .sum();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let mut reply = last_user;
    let mut finish_reason = "stop";
    if let Some(max) = max_tokens {
        let max_bytes = usize::try_from(max.saturating_mul(4)).unwrap_or(usize::MAX);
        if reply.len() > max_bytes {
            let mut cut = max_bytes;
            while !reply.is_char_boundary(cut) {
                cut -= 1;
            }
            reply.truncate(cut);
            finish_reason = "length";
        }
    }
    let completion_tokens = count_tokens(&reply);
    EchoPlan {
        reply,
        prompt_tokens,
        completion_tokens,
        finish_reason,
    }
}

pub fn usage_json(p: &EchoPlan) -> Value {
    json!({"prompt_tokens": p.prompt_tokens, "completion_tokens": p.completion_tokens,
           "total_tokens": p.prompt_tokens + p.completion_tokens})
}

pub fn completion(p: &EchoPlan, id: &str, model: &str, created: i64) -> Value {
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": p.reply}, "finish_reason": p.finish_reason}],
        "usage": usage_json(p),
    })
}

/// The SSE body an OpenAI-compatible upstream would send with `include_usage`.
pub fn sse_chunks(p: &EchoPlan, id: &str, model: &str, created: i64) -> Vec<bytes::Bytes> {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let mut piece = String::new();
    for (i, word) in p.reply.split_inclusive(' ').enumerate() {
        piece.push_str(word);
        if i % 4 == 3 {
            events.push(chunk(json!({"content": std::mem::take(&mut piece)}), None));
        }
    }
    if !piece.is_empty() {
        events.push(chunk(json!({"content": piece}), None));
    }
    events.push(chunk(json!({}), Some(p.finish_reason)));
    events.push(
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": usage_json(p)}),
    );
    let mut out: Vec<bytes::Bytes> = events
        .into_iter()
        .map(|e| bytes::Bytes::from(format!("data: {e}\n\n")))
        .collect();
    out.push(bytes::Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_last_user_message() {
        let msgs = vec![
            json!({"role": "system", "content": "be nice"}),
            json!({"role": "user", "content": "Hello there"}),
        ];
        let p = plan(&msgs, None);
        assert_eq!(p.reply, "Hello there");
        assert_eq!(p.prompt_tokens, 2 + 4 + 3 + 4);
        assert_eq!(p.completion_tokens, 3);
        let short = plan(&msgs, Some(1));
        assert_eq!(short.reply, "Hell");
        assert_eq!(short.finish_reason, "length");
    }

    #[test]
    fn streams_reassemble_to_the_reply() {
        let p = plan(
            &[json!({"role": "user", "content": "one two three four five six"})],
            None,
        );
        let body: String = sse_chunks(&p, "g", "m", 0)
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let text: String = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|l| *l != "[DONE]")
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, p.reply);
        assert!(body.ends_with("data: [DONE]\n\n"));
    }
}
