//! `POST /api/v1/embeddings`: the same key, scope, limits and metering as chat.

use serde_json::{json, Value};

use crate::helpers::*;

async fn embed(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/embeddings"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn embeddings_are_scoped_metered_and_recorded_like_chat() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("embedder", &[]).await;

    // Two inputs: the fake provider counts 3 tokens each; 1000 credits per million tokens.
    let r = embed(
        &app,
        &token,
        json!({"model": "test/embed", "input": ["one", "two"]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let generation = r.headers()["x-lowrouter-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "test/embed", "the catalogue id");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let g: Value = app
        .api_json(&token, &format!("/api/v1/generation/{generation}"))
        .await;
    assert_eq!(g["data"]["prompt_tokens"], 6);
    assert_eq!(g["data"]["completion_tokens"], 0);
    assert_eq!(g["data"]["cost"], "0.006000");
    assert_eq!(g["data"]["provider"], "fake-eu", "after the dead provider");

    // Each endpoint serves its own kind of model.
    let r = embed(&app, &token, json!({"model": "test/ok", "input": "x"})).await;
    assert_eq!(r.status(), 400);
    let r = app
        .chat(
            &token,
            json!({"model": "test/embed", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);

    // Bad input is refused before anything is held or forwarded.
    for bad in [
        json!({"model": "test/embed"}),
        json!({"model": "test/embed", "input": []}),
        json!({"model": "test/embed", "input": [1, "a"]}),
        json!({"input": "x"}),
    ] {
        let r = embed(&app, &token, bad.clone()).await;
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "invalid_request");
    }

    // The key's model scope applies.
    let scoped = app.create_key("chat-only", &[("models", "test/ok")]).await;
    let r = embed(&app, &scoped, json!({"model": "test/embed", "input": "x"})).await;
    assert_eq!(r.status(), 403);

    // Without a key: 401, nothing recorded.
    let r = app
        .client
        .post(app.url("/api/v1/embeddings"))
        .json(&json!({"model": "test/embed", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .get(app.url("/api/v1/embeddings"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn an_embeddings_request_cannot_pass_the_daily_limit() {
    let app = spawn_app().await;
    app.signed_up().await;
    // The hold is the body's prompt bound (≥ one token per two bytes) at 1000 per million.
    let token = app.create_key("tight", &[("daily_limit", "0.05")]).await;
    let big = "word ".repeat(20_000);
    let r = embed(&app, &token, json!({"model": "test/embed", "input": big})).await;
    assert_eq!(r.status(), 429);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "daily_limit_reached");
    let r = embed(
        &app,
        &token,
        json!({"model": "test/embed", "input": "small"}),
    )
    .await;
    assert_eq!(r.status(), 200);
}
