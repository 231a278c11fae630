//! Operations over HTTP: request ids, health and readiness, Prometheus metrics.
//! (Graceful shutdown runs against the real binary in tests/faults.rs.)

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, PASSWORD};

fn request_id(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-request-id")
        .expect("every response carries x-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

fn is_generated(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[tokio::test]
async fn every_response_carries_a_request_id_sane_ones_echoed_hostile_ones_replaced() {
    let app = spawn_app().await;
    // Generated when none is given, and a new one each time: on a page, the gateway, a 404.
    let mut seen = Vec::new();
    for path in ["/login", "/api/v1/models", "/no/such/page", "/healthz"] {
        let r = app.get(path).await;
        let id = request_id(&r);
        assert!(is_generated(&id), "{path}: {id}");
        seen.push(id);
    }
    seen.dedup();
    assert_eq!(seen.len(), 4, "ids differ per request");

    // A sane id from the client (a proxy's, a trace's) is kept.
    for given in [
        "abc-123",
        "0b9e3f43-5a9e-4f3a-8f6c-2d8a1c3e7b10",
        "trace:42/x.y_z",
    ] {
        let r = app
            .client
            .get(app.url("/api/v1/key"))
            .header("x-request-id", given)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(request_id(&r), given);
    }

    // Hostile ones are replaced: too long, spaces, control characters, bytes beyond ASCII.
    // (NUL, CR, LF and DEL cannot be sent in a header at all.)
    let long = "a".repeat(10 * 1024);
    let hostile: Vec<Vec<u8>> = vec![
        long.into_bytes(),
        b"two words".to_vec(),
        b"tab\there".to_vec(),
        b"\x80\x81\x82".to_vec(),
        b"bytes\xff\x80\xc3".to_vec(),
        b"x".repeat(65),
    ];
    for given in hostile {
        let value = reqwest::header::HeaderValue::from_bytes(&given).unwrap();
        let r = app
            .client
            .post(app.url("/login"))
            .header("x-request-id", value)
            .form(&[("email", "a@example.com")])
            .send()
            .await
            .unwrap();
        let id = request_id(&r);
        assert!(is_generated(&id), "{given:?} replaced by {id}");
    }
}

#[tokio::test]
async fn healthz_and_readyz_answer_without_a_session_and_readyz_checks_migrations() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "no session");
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "no session");
    assert_eq!(r.text().await.unwrap(), "ready\n");

    // The schema falls behind the binary (the last migration is unrecorded): not ready.
    app.execute_sql(
        "delete from _sqlx_migrations where version = (select max(version) from _sqlx_migrations)",
    )
    .await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "not ready: migrations pending\n");
    // Alive all the same.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn metrics_are_off_by_default_and_never_on_the_main_listener() {
    let app = spawn_app().await;
    assert!(app.metrics_port.is_none());
    assert_eq!(app.get("/metrics").await.status(), 404);
}

#[tokio::test]
async fn metrics_count_routes_models_and_providers_without_names_tokens_or_emails() {
    let app = spawn_app_with(|s| s.metrics_bind = Some("127.0.0.1:0".into())).await;
    let metrics_port = app.metrics_port.expect("metrics listener bound");
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "not on the main listener"
    );

    let email = app.signed_up().await;
    let key_name = "Quarterly-Secret-Project";
    let token = app.create_key(key_name, &[]).await;
    let key_id = app.key_id(key_name).await;
    assert_eq!(app.get(&format!("/keys/{key_id}/edit")).await.status(), 200);
    let r = app.echo(&token, "hello metrics").await;
    assert_eq!(r.status(), 200);
    let r = app
        .chat(
            &token,
            json!({"model": "lowrouter/echo", "stream": true, "messages": [{"role": "user", "content": "s"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    // Falls over from the dead provider to the fake one.
    let r = app
        .chat(
            &token,
            json!({"model": "test/ok", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // A client's model string that is no catalogue id.
    let client_model = "client-chosen-model-string";
    let r = app
        .chat(
            &token,
            json!({"model": client_model, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    // A failed sign-in (in a second client, so this one stays signed in).
    let other = crate::helpers::spawn_clone(&app);
    assert_eq!(
        other.login(&email, "not-the-password-1").await.status(),
        401
    );

    let scrape = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = scrape.text().await.unwrap();
    for expected in [
        r#"lowrouter_http_requests_total{method="POST",route="/api/v1/chat/completions",status="200"}"#,
        r#"lowrouter_http_requests_total{method="GET",route="/keys/{id}/edit",status="200"}"#,
        r#"lowrouter_http_requests_total{method="POST",route="/login",status="401"}"#,
        r#"lowrouter_http_request_duration_seconds_bucket{method="POST",route="/api/v1/chat/completions",le="0.005"}"#,
        r#"model="lowrouter/echo",provider="lowrouter",outcome="ok",status="200",streamed="true""#,
        r#"model="lowrouter/echo",provider="lowrouter",outcome="ok",status="200",streamed="false""#,
        r#"model="test/ok",provider="fake-eu",outcome="ok",status="200""#,
        r#"model="none",provider="none",outcome="client_error",status="404""#,
        r#"lowrouter_upstream_errors_total{provider="dead"}"#,
        r#"lowrouter_upstream_fallbacks_total{model="test/ok"}"#,
        "lowrouter_gateway_request_duration_seconds_bucket",
        "lowrouter_usage_batch_rows_bucket",
        "lowrouter_login_failures_total",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    for secret in [
        key_name,
        &token,
        &token[10..30],
        &email,
        PASSWORD,
        client_model,
        &format!("/keys/{key_id}/"),
    ] {
        assert!(!text.contains(secret), "the metrics contain {secret:?}");
    }
}
