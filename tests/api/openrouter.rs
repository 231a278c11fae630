//! What OpenRouter's clients expect of the reply: the catalogue id as `model`, OpenRouter's
//! `usage: {"include": true}` cost, and its gateway fields never reaching a provider.

use serde_json::{json, Value};

use crate::helpers::*;

/// Every `data:` payload of a stream, `[DONE]` included.
fn events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect()
}

#[tokio::test]
async fn replies_name_the_catalogue_model_and_carry_their_cost_when_asked() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("openrouter-client", &[]).await;
    let ask = |stream: bool| {
        json!({"model": "test/ok", "stream": stream, "usage": {"include": true},
            "provider": {"order": ["fake-eu"]}, "transforms": ["middle-out"], "route": "fallback",
            "messages": [{"role": "user", "content": "hi"}]})
    };

    // A complete reply: the provider called the model `ok`; the client asked for `test/ok`.
    let r = app.chat(&token, ask(false)).await;
    assert_eq!(r.status(), 200, "gateway fields are not forwarded");
    let generation = r.headers()["x-lowrouter-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "test/ok");
    let recorded: Value = app
        .api_json(&token, &format!("/api/v1/generation/{generation}"))
        .await;
    let cost = recorded["data"]["cost"].as_str().unwrap().to_owned();
    assert_ne!(cost, "0.000000");
    assert_eq!(
        format!("{:.6}", body["usage"]["cost"].as_f64().unwrap()),
        cost,
        "usage.cost is what was charged"
    );

    // A stream: every chunk names `test/ok`, the usage chunk comes last with its cost, and
    // the stream ends with exactly one blank line before `[DONE]`.
    let r = app.chat(&token, ask(true)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text:?}");
    assert!(!text.contains("\n\n\n"), "{text:?}");
    let events = events(&text);
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["model"] == "test/ok"), "{text}");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["cost"].as_f64().unwrap() > 0.0, "{text}");

    // Without `usage.include`, no cost (and no usage chunk unless asked the OpenAI way).
    let r = app
        .chat(
            &token,
            json!({"model": "test/ok", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let text = r.text().await.unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
    assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text:?}");
}

#[tokio::test]
async fn the_built_in_model_reports_its_cost_too() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("echo-cost", &[]).await;
    let r = app
        .chat(
            &token,
            json!({"model": "lowrouter/echo", "usage": {"include": true},
            "messages": [{"role": "user", "content": "hello there"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "lowrouter/echo");
    assert!(body["usage"]["cost"].is_number(), "{body}");
}

#[tokio::test]
async fn key_credits_and_generation_reads_carry_openrouters_fields() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app
        .create_key("limited", &[("daily_limit", "1"), ("monthly_limit", "3")])
        .await;
    let r = app
        .chat(
            &token,
            json!({"model": "test/ok", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let generation = r.headers()["x-lowrouter-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let ours: Value = app
        .api_json(&token, &format!("/api/v1/generation/{generation}"))
        .await;
    let theirs: Value = app
        .api_json(&token, &format!("/api/v1/generation?id={generation}"))
        .await;
    assert_eq!(ours, theirs, "both spellings answer the same");
    let g = &theirs["data"];
    let cost = g["cost"].as_str().unwrap();
    assert_eq!(format!("{:.6}", g["total_cost"].as_f64().unwrap()), cost);
    assert_eq!(g["tokens_prompt"], g["prompt_tokens"]);
    assert_eq!(g["tokens_completion"], g["completion_tokens"]);
    assert_eq!(g["provider_name"], "fake-eu");
    let r = app
        .client
        .get(app.url("/api/v1/generation"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no id");

    let key: Value = app.api_json(&token, "/api/v1/key").await;
    let k = &key["data"];
    assert_eq!(
        k["limit"].as_f64(),
        Some(1.0),
        "the daily limit has less room"
    );
    assert_eq!(k["limit_reset"], "daily");
    let spent = k["usage_daily"].as_f64().unwrap();
    assert_eq!(format!("{spent:.6}"), cost);
    assert_eq!(format!("{:.6}", k["usage"].as_f64().unwrap()), cost);
    assert_eq!(
        format!("{:.6}", k["limit_remaining"].as_f64().unwrap()),
        k["remaining_today"].as_str().unwrap()
    );
    assert_eq!(k["label"], k["token"]);

    let credits: Value = app.api_json(&token, "/api/v1/credits").await;
    let c = &credits["data"];
    assert_eq!(format!("{:.6}", c["total_usage"].as_f64().unwrap()), cost);
    assert_eq!(c["total_credits"].as_f64(), Some(5.0), "the sign-up grant");
}

#[tokio::test]
async fn openrouters_models_list_falls_back_within_the_keys_scope() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("fallbacks", &[]).await;
    let ask = |model: &str, models: Value| json!({"model": model, "models": models, "messages": [{"role": "user", "content": "hi"}]});

    // Every provider of `test/fail` fails: `test/ok` serves, and the reply and the usage row
    // say so.
    let r = app.chat(&token, ask("test/fail", json!(["test/ok"]))).await;
    assert_eq!(r.status(), 200);
    let generation = r.headers()["x-lowrouter-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "test/ok");
    let g: Value = app
        .api_json(&token, &format!("/api/v1/generation/{generation}"))
        .await;
    assert_eq!(g["data"]["requested_model"], "test/fail");
    assert_eq!(g["data"]["model"], "test/ok");
    assert_eq!(g["data"]["status"], "ok");

    // A model with no configured provider is passed over for the next; streams too.
    let mut streamed = ask("test/unconfigured", json!(["test/ok"]));
    streamed["stream"] = json!(true);
    let r = app.chat(&token, streamed).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"model\":\"test/ok\""));

    // Without a fallback that works, the failure is the asked model's.
    let r = app
        .chat(&token, ask("test/fail", json!(["test/fail"])))
        .await;
    assert_eq!(r.status(), 502);

    // A fallback the key may not use, or that does not exist, is refused up front.
    let scoped = app.create_key("scoped", &[("models", "test/fail")]).await;
    let r = app
        .chat(&scoped, ask("test/fail", json!(["test/ok"])))
        .await;
    assert_eq!(r.status(), 403);
    let r = app
        .chat(&token, ask("test/ok", json!(["nope/nothing"])))
        .await;
    assert_eq!(r.status(), 404);
    for bad in [
        json!("test/ok"),
        json!([1]),
        json!([""]),
        json!(vec!["test/ok"; 9]),
    ] {
        let r = app.chat(&token, ask("test/ok", bad.clone())).await;
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn models_carry_openrouters_fields() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("lister", &[]).await;
    let m: Value = app.api_json(&token, "/api/v1/models/test/ok").await;
    assert_eq!(m["created"], 1_715_558_400, "2024-05-13, midnight UTC");
    assert_eq!(m["context_length"], 128_000);
    assert_eq!(m["kind"], "chat");
    assert!(m["description"].is_string());
    let p = &m["pricing"];
    // The fixture's per-million prices, per token, exact.
    let per_token = |per_million: &str| {
        let v: f64 = per_million.parse().unwrap();
        format!("{}", v / 1e6)
    };
    assert_eq!(
        p["prompt"].as_str().unwrap(),
        per_token(p["input_per_million"].as_str().unwrap())
    );
    assert!(m["supported_parameters"]
        .as_array()
        .unwrap()
        .contains(&json!("tools")));
    let e: Value = app.api_json(&token, "/api/v1/models/test/embed").await;
    assert_eq!(e["kind"], "embeddings");
    assert_eq!(e["created"], 0, "no release date in the catalogue");
}
