//! What the client sees when providers misbehave: their credentials refused, rate limits,
//! streams that are slow but healthy or stalled, models no provider is configured for.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn ask(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn provider_credential_failures_are_the_gateways_not_the_clients() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;

    // The first provider refuses our credentials; the next one serves.
    let r = app.chat(&token, ask("test/auth-then-ok", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-lowrouter-provider"], "fake-us");

    // Only a provider that refuses them: 502, never a 401 blaming the client's key, and
    // nothing of the provider's answer (which names the operator's masked key).
    let r = app.chat(&token, ask("test/auth", false)).await;
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("www-authenticate").is_none());
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "upstream_auth_error");
    assert!(
        !text.contains("sk-upstr") && !text.contains("Incorrect API key"),
        "{text}"
    );
    // The key still works, and nothing was charged for the failure.
    let key = app.api_json(&token, "/api/v1/key").await;
    assert_eq!(key["data"]["name"], "k");
}

#[tokio::test]
async fn every_provider_rate_limited_is_a_429_with_the_longest_retry_after() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    let r = app.chat(&token, ask("test/ratelimited", false)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_rate_limited");
}

#[tokio::test]
async fn a_slow_healthy_stream_is_not_cut_but_a_stalled_one_is() {
    // In all 2 s: a drip of 2.4 s would have been cut by a total deadline of 2 s; now the
    // total is generous and the idle deadline (between chunks) is what bounds a stream.
    let app = spawn_app_with(|s| {
        s.upstream_timeout = Duration::from_secs(30);
        s.upstream_idle_timeout = Duration::from_secs(1);
    })
    .await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;

    let r = app.chat(&token, ask("test/drip", true)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(text.matches("tick").count(), 6, "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let started = std::time::Instant::now();
    let r = app.chat(&token, ask("test/stall", true)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut by the idle deadline"
    );
    assert_eq!(text.matches("tick").count(), 1, "{text}");
    assert!(
        !text.ends_with("data: [DONE]\n\n"),
        "a cut stream does not claim to be done"
    );
    assert!(text.contains("upstream_error"), "{text}");
}

#[tokio::test]
async fn models_without_a_configured_provider_are_not_listed_and_answer_503() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    let models = app.api_json(&token, "/api/v1/models").await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"test/ok"));
    assert!(!ids.contains(&"test/unconfigured"), "{ids:?}");
    let r = app.chat(&token, ask("test/unconfigured", false)).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_unavailable");
}

#[tokio::test]
async fn a_forwarded_stream_without_the_usage_chunk_keeps_clean_framing() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    // The gateway asks the provider for usage; the client did not, so that chunk is removed
    // with the blank line that ended it.
    let r = app.chat(&token, ask("test/ok", true)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
    assert!(!text.contains("\n\n\n"), "no stray blank line: {text:?}");
    assert!(text.ends_with("}\n\ndata: [DONE]\n\n"), "{text:?}");
    // Every event is one `data:` line and a blank line.
    for event in text.trim_end().split("\n\n") {
        assert!(
            event.starts_with("data: ") && !event.contains('\n'),
            "{event:?}"
        );
    }
}

#[tokio::test]
async fn api_shapes_clients_expect_methods_models_times_and_cors() {
    let app =
        spawn_app_with(|s| s.cors_allowed_origins = vec!["https://app.example.com".into()]).await;
    app.signed_up().await;
    let token = app.create_key("k", &[("models", "test/ok")]).await;

    // A GET on the POST endpoint: 405 with Allow, in the API's error shape.
    let r = app
        .client
        .get(app.url("/api/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed");

    // models.retrieve: what /models lists, and nothing else.
    let m = app.api_json(&token, "/api/v1/models/test/ok").await;
    assert_eq!(m["id"], "test/ok");
    for other in ["lowrouter/echo", "test/unconfigured", "no/such"] {
        let r = app
            .client
            .get(app.url(&format!("/api/v1/models/{other}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{other}");
    }

    // Times in JSON are RFC 3339.
    let key = app.api_json(&token, "/api/v1/key").await;
    let created = key["data"]["created_at"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
        "{created}"
    );

    // CORS for the allowed origin only, preflight included.
    let preflight = |origin: &'static str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                app.url("/api/v1/chat/completions"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_cors_origins_no_response_carries_cors_headers() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/api/v1/models"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_a_502_that_frees_its_hold() {
    let app = spawn_app_with(|s| s.upstream_max_body_bytes = 1024 * 1024).await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    for model in ["test/huge", "test/huge-rejected"] {
        let r = app.chat(&token, ask(model, false)).await;
        assert_eq!(r.status(), 502, "{model}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_error", "{model}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("larger than 1048576 bytes"), "{message}");
    }
    let c = app.api_json(&token, "/api/v1/credits").await;
    assert_eq!(c["data"]["reserved"], "0.000000", "the holds were freed");
    assert_eq!(c["data"]["balance"], "5.000000", "and nothing charged");
    // Under the cap (the default, 32 MiB), the same answer is read.
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    let r = app.chat(&token, ask("test/huge-rejected", false)).await;
    assert_eq!(
        r.status(),
        400,
        "a provider's 4xx under the cap is passed back"
    );
}
