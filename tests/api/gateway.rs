use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::helpers::*;

async fn error_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.expect("JSON error body"))
}

#[tokio::test]
async fn bad_authorization_headers_get_401_without_echoing_the_token() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    let mut typo = token.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let body = json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": "x"}]});
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "Missing Authorization"),
        (Some(format!("bearer {token}")), "Malformed"),
        (Some(format!("Bearer  {token}")), "Malformed"),
        (Some(format!("Bearer \"{token}\"")), "Malformed"),
        (Some(format!("Basic {token}")), "Malformed"),
        (Some(token.clone()), "Malformed"),
        (Some(format!("Bearer {typo}")), "checksum"),
        (
            Some(format!(
                "Bearer {}",
                lowrouter::domain::ApiToken::generate().expose()
            )),
            "Invalid API key",
        ),
    ];
    for (header, message) in cases {
        let mut req = app
            .client
            .post(app.url("/api/v1/chat/completions"))
            .json(&body);
        if let Some(h) = &header {
            req = req.header("authorization", h);
        }
        let r = req.send().await.unwrap();
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let (status, err) = error_of(r).await;
        assert_eq!(status, 401, "{header:?}");
        assert_eq!(err["error"]["code"], "invalid_api_key");
        let text = err.to_string();
        assert!(text.contains(message), "{message} in {text}");
        assert!(!text.contains(&token[10..]), "token echoed");
    }
    for path in [
        "/api/v1/models",
        "/api/v1/key",
        "/api/v1/credits",
        "/api/v1/generation/gen-x",
    ] {
        assert_eq!(
            app.client.get(app.url(path)).send().await.unwrap().status(),
            401,
            "{path}"
        );
    }
}

#[tokio::test]
async fn echo_completion_counts_and_charges_and_records() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("local-dev", &[]).await;
    let r = app.echo(&token, "Hello there friend").await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let gen = h["x-lowrouter-generation-id"].to_str().unwrap().to_owned();
    assert_eq!(h["x-lowrouter-provider"], "lowrouter");
    assert!(h.contains_key("x-lowrouter-region"));
    // 18 bytes -> 5 tokens + 4 framing = 9 prompt; 5 completion; 14 tokens at 1000/M = 0.014.
    assert_eq!(h["x-credit-balance"], "4.986000");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there friend");
    assert_eq!(v["usage"]["prompt_tokens"], 9);
    assert_eq!(v["usage"]["completion_tokens"], 5);

    let g: Value = app
        .api_json(&token, &format!("/api/v1/generation/{gen}"))
        .await;
    assert_eq!(g["data"]["key_name"], "local-dev");
    assert_eq!(g["data"]["cost"], "0.014000");
    assert_eq!(g["data"]["status"], "ok");
    let c: Value = app.api_json(&token, "/api/v1/credits").await;
    assert_eq!(c["data"]["balance"], "4.986000");
    assert_eq!(
        c["data"]["reserved"], "0.000000",
        "hold released after settlement"
    );
}

#[tokio::test]
async fn echo_streams_and_records_usage_before_done() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("s", &[]).await;
    let r = app
        .chat(&token, json!({"model": "lowrouter/echo", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "one two three four five"}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let gen = r.headers()["x-lowrouter-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = r.text().await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"));
    assert!(body.contains("\"usage\""), "usage chunk when asked for");
    let text: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "one two three four five");
    // By the time [DONE] arrived, the row was committed.
    let g = app
        .client
        .get(app.url(&format!("/api/v1/generation/{gen}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 200);
}

#[tokio::test]
async fn forwards_to_a_real_upstream_with_fallback_and_streaming() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("fwd", &[]).await;
    // test/ok: the first provider refuses connections; the second answers.
    let r = app.chat(&token, json!({"model": "test/ok", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-lowrouter-provider"], "fake-eu");
    assert_eq!(r.headers()["x-lowrouter-region"], "eu-west");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 20);
    // 10 in at 100/M + 20 out at 200/M = 0.001 + 0.004.
    let key: Value = app.api_json(&token, "/api/v1/key").await;
    assert_eq!(key["data"]["spend_today"], "0.005000");

    // Provider credentials come from the environment variable named in the catalogue.
    let r = app
        .chat(
            &token,
            json!({"model": "test/us-only", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "auth=Bearer sk-upstream-test"
    );

    let r = app
        .chat(&token, json!({"model": "test/ok", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("Hel") && body.trim_end().ends_with("data: [DONE]"));
    assert!(
        !body.contains("\"usage\""),
        "usage chunk stripped when the client did not ask"
    );
    let key: Value = app.api_json(&token, "/api/v1/key").await;
    assert_eq!(
        key["data"]["spend_today"], "0.015000",
        "streamed usage read from the final chunk"
    );
}

#[tokio::test]
async fn upstream_errors() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("errs", &[]).await;
    let msg = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});
    // 4xx passes through in OpenAI form.
    let (status, err) = error_of(app.chat(&token, msg("test/bad")).await).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "bad_thing");
    // 5xx then connection refused: 502.
    let (status, err) = error_of(app.chat(&token, msg("test/fail")).await).await;
    assert_eq!(status, 502);
    assert_eq!(err["error"]["code"], "upstream_error");
    // Timeout (the test app's upstream timeout is 2 s; the fake sleeps 5 s).
    let (status, _) = error_of(app.chat(&token, msg("test/slow")).await).await;
    assert_eq!(status, 502);
    let c: Value = app.api_json(&token, "/api/v1/credits").await;
    assert_eq!(
        c["data"]["balance"], "5.000000",
        "failed requests cost nothing"
    );
    assert_eq!(c["data"]["reserved"], "0.000000");
    // Usage recorded the failures.
    let html = app.get_html("/usage?status=upstream_error").await;
    assert_eq!(
        html.matches("badge bad wraps\">502 · Provider failed")
            .count(),
        2
    );
}

#[tokio::test]
async fn scoping_statuses_and_codes() {
    let app = spawn_app().await;
    app.signed_up().await;
    let scoped = app
        .create_key(
            "scoped",
            &[
                ("models", "lowrouter/echo"),
                ("models", "test/us-only"),
                ("region", "eu-west"),
            ],
        )
        .await;
    let msg = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "hi"}]});

    let (s, e) = error_of(app.chat(&scoped, msg("nope/model")).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (404, "model_not_found")
    );
    let (s, e) = error_of(app.chat(&scoped, msg("test/ok")).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (403, "model_not_allowed")
    );
    let (s, e) = error_of(app.chat(&scoped, msg("test/us-only")).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (503, "region_unavailable")
    );

    // auto: test/ok is preferred but not allowed; echo is.
    let r = app.chat(&scoped, msg("lowrouter/auto")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-lowrouter-region"],
        "eu-west",
        "pinned region"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "lowrouter/echo");

    // Bad JSON and fields: 400 invalid_request.
    for body in [
        json!([1]),
        json!({"messages": []}),
        json!({"model": "lowrouter/echo"}),
        json!({"model": 5, "messages": [{"role": "user"}]}),
        json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
        json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
    ] {
        let (s, e) = error_of(app.chat(&scoped, body.clone()).await).await;
        assert_eq!(
            (s, e["error"]["code"].as_str().unwrap()),
            (400, "invalid_request"),
            "{body}"
        );
    }
    let r = app
        .client
        .post(app.url("/api/v1/chat/completions"))
        .bearer_auth(&scoped)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Over the default limit (20 MiB, what providers take for chat with images).
    let huge = "x".repeat(20 * 1024 * 1024 + 1);
    let r = app
        .client
        .post(app.url("/api/v1/chat/completions"))
        .bearer_auth(&scoped)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "request_too_large"
    );

    // /models lists only what this key may use, in its region.
    let m: Value = app.api_json(&scoped, "/api/v1/models").await;
    let ids: Vec<&str> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["lowrouter/echo"]);
    assert_eq!(m["data"][0]["regions"], json!(["eu-west"]));
}

#[tokio::test]
async fn limits_and_balance() {
    let app = spawn_app().await;
    app.signed_up().await;
    // Each echo of 40 bytes: 10+4 prompt + 10 completion = 24 tokens = 0.024 credits.
    let text = "x".repeat(40);
    let daily = app.create_key("daily", &[("daily_limit", "0.05")]).await;
    assert_eq!(app.echo(&daily, &text).await.status(), 200);
    assert_eq!(app.echo(&daily, &text).await.status(), 200);
    let r = app.echo(&daily, &text).await;
    assert_eq!(r.status(), 429);
    let retry: i64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 86_400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "daily_limit_reached");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("resets at"));

    let monthly = app
        .create_key("monthly", &[("monthly_limit", "0.03")])
        .await;
    assert_eq!(app.echo(&monthly, &text).await.status(), 200);
    let (s, e) = error_of(app.echo(&monthly, &text).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (429, "monthly_limit_reached")
    );

    // Balance: 5 credits; one echo of 4000 bytes costs 2.008; the third cannot be held.
    let big = "y".repeat(4000);
    let spender = app.create_key("spender", &[]).await;
    assert_eq!(app.echo(&spender, &big).await.status(), 200);
    assert_eq!(app.echo(&spender, &big).await.status(), 200);
    let (s, e) = error_of(app.echo(&spender, &big).await).await;
    assert_eq!(
        (s, e["error"]["code"].as_str().unwrap()),
        (402, "insufficient_credits")
    );
    let c: Value = app.api_json(&spender, "/api/v1/credits").await;
    let balance: f64 = c["data"]["balance"].as_str().unwrap().parse().unwrap();
    assert!(balance >= 0.0);
}

/// 200 concurrent requests against a small daily limit: never more than the limit spent,
/// never a negative balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_overspend() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("hammer", &[("daily_limit", "0.5")]).await;
    let text = "z".repeat(40); // 0.024 credits each: at most 20 fit in 0.5
    let client = app.client.clone();
    let url = app.url("/api/v1/chat/completions");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (client, url, token, text) = (client.clone(), url.clone(), token.clone(), text.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": text}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 20, "exactly as many as the limit allows");
    // A read through the API waits until every answered request is in the database
    // (SQLite applies its usage journal within milliseconds; this makes it now).
    app.api_json(&token, "/api/v1/credits").await;
    let spent = app
        .scalar_i64("select cast(coalesce(sum(cost), 0) as bigint) from usage")
        .await;
    assert!(spent <= 500_000, "spent {spent} > limit");
    assert_eq!(spent, 20 * 24_000);
    // One row per request, but for the refusals beyond the key's budget of recorded
    // refusals (gateway::refusals), which are answered and not recorded.
    let rows = app.scalar_i64("select count(*) from usage").await;
    let budget = i64::from(lowrouter::gateway::refusals::KEY_BURST);
    assert!((20 + budget..=200).contains(&rows), "{rows} rows");
    assert_eq!(app.scalar_i64("select count(*) from reservations").await, 0);
    assert_eq!(
        app.scalar_i64("select min(balance - reserved) from accounts")
            .await,
        5_000_000 - spent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_drive_the_balance_negative() {
    let app =
        spawn_app_with(|s| s.signup_grant = lowrouter::domain::Credits::parse("0.2").unwrap())
            .await;
    app.signed_up().await;
    let token = app.create_key("drain", &[]).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/v1/chat/completions"),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client.post(url).bearer_auth(token)
                .json(&json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": "w".repeat(40)}]}))
                .send().await.unwrap().status().as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap();
        // 429: refusals beyond the key's budget of recorded refusals (gateway::refusals).
        assert!(s == 200 || s == 402 || s == 429, "{s}");
        ok += usize::from(s == 200);
    }
    assert_eq!(ok, 8, "0.2 / 0.024 = 8 requests fit");
    app.api_json(&token, "/api/v1/credits").await; // every answered request applied
    assert!(app.scalar_i64("select min(balance) from accounts").await >= 0);
}

/// Concurrent requests share key reads on PostgreSQL (`store::keys::group_read`): each must
/// still be answered as its own key (charged to it, refused when its key is revoked), and a
/// revocation answered before a burst starts is seen by every request of the burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_of_many_keys_are_each_answered_as_their_own_key() {
    let app = spawn_app().await;
    app.signed_up().await;
    let names = ["alpha", "beta", "gamma", "doomed"];
    let mut tokens = Vec::new();
    for name in names {
        tokens.push(app.create_key(name, &[]).await);
    }
    let id = app.key_id("doomed").await;
    let delete = format!("/keys/{id}/delete");
    app.post_form(&delete, &delete, &[]).await;
    let mut tasks = Vec::new();
    for i in 0..120 {
        let (client, url) = (app.client.clone(), app.url("/api/v1/chat/completions"));
        let (which, token) = (i % names.len(), tokens[i % names.len()].clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": "x".repeat(8 * (which + 1))}]}))
                .send()
                .await
                .unwrap();
            (which, r.status().as_u16())
        }));
    }
    for t in tasks {
        let (which, status) = t.await.unwrap();
        let expected = if names[which] == "doomed" { 401 } else { 200 };
        assert_eq!(status, expected, "{}", names[which]);
    }
    app.api_json(&tokens[0], "/api/v1/credits").await; // every answered request applied
    for (which, name) in names.iter().enumerate().take(3) {
        let (rows, tokens_in) = (
            app.scalar_i64(&format!(
                "select count(*) from usage where key_name = '{name}'"
            ))
            .await,
            app.scalar_i64(&format!(
                "select cast(coalesce(sum(prompt_tokens), 0) as bigint) from usage where key_name = '{name}'"
            ))
            .await,
        );
        assert_eq!(rows, 30, "{name}: its own 30 requests");
        // Each key sent a prompt of its own length: the rows are its requests, not another's.
        let one = app
            .scalar_i64(&format!(
                "select min(prompt_tokens) from usage where key_name = '{name}'"
            ))
            .await;
        assert_eq!(tokens_in, 30 * one, "{name}: all rows alike");
        assert!(which == 0 || one > 0);
    }
    let distinct = app
        .scalar_i64("select count(distinct prompt_tokens) from usage where status = 'ok'")
        .await;
    assert_eq!(distinct, 3, "three keys, three prompt sizes");
    // The deleted key's refusals are its own history: 30 rows saying so, nothing charged.
    assert_eq!(
        app.scalar_i64(
            "select count(*) from usage where key_name = 'doomed' and error_code = 'key_revoked' and cost = 0 and http_status = 401"
        )
        .await,
        30
    );
}

#[tokio::test]
async fn deleting_a_key_fails_its_next_request() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("doomed", &[]).await;
    assert_eq!(app.echo(&token, "hi").await.status(), 200);
    let id = app.key_id("doomed").await;
    app.post_form(
        &format!("/keys/{id}/delete"),
        &format!("/keys/{id}/delete"),
        &[],
    )
    .await;
    let (s, e) = error_of(app.echo(&token, "hi").await).await;
    assert_eq!(s, 401);
    assert_eq!(
        e["error"]["message"], "Invalid API key.",
        "revoked reads like unknown"
    );
}

#[tokio::test]
async fn generation_of_another_account_is_404() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("a", &[]).await;
    let gen = app.echo(&token, "hi").await.headers()["x-lowrouter-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let other = spawn_clone(&app);
    other.signed_up().await;
    let other_token = other.create_key("b", &[]).await;
    let r = other
        .client
        .get(other.url(&format!("/api/v1/generation/{gen}")))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(other.get(&format!("/usage/{gen}")).await.status(), 404);
    assert_eq!(app.get(&format!("/usage/{gen}")).await.status(), 200);
}

#[tokio::test]
async fn missing_usage_is_estimated_not_free() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("n", &[]).await;
    let r = app
        .chat(
            &token,
            json!({"model": "test/nousage", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let k: Value = app.api_json(&token, "/api/v1/key").await;
    assert_ne!(k["data"]["spend_today"], "0.000000");
    assert!(app.upstream.as_ref().unwrap().hits.load(Ordering::SeqCst) >= 1);
}

/// A request whose body arrives slowly is authenticated again once the body is in: a key
/// deleted meanwhile is refused (and the hold book's memory of settled charges only has to
/// cover the moments between a read and a reservation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_deleted_during_a_slow_upload_is_refused() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("slow-uploader", &[]).await;
    let id = app.key_id("slow-uploader").await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(2);
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|part| part.map(|s| Ok::<_, std::io::Error>(s.as_bytes().to_vec())))
    });
    let request = app
        .client
        .post(app.url("/api/v1/chat/completions"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let sending = tokio::spawn(request);
    tx.send(r#"{"model": "lowrouter/echo", "#).await.unwrap();
    // The gateway has read the key by now, and waits for the rest of the body.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = app
        .post_form(&format!("/keys/{id}/delete"), "/keys", &[])
        .await;
    assert_eq!(r.status(), 303);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tx.send(r#""messages": [{"role": "user", "content": "still there?"}]}"#)
        .await
        .unwrap();
    drop(tx);
    let r = sending.await.unwrap().unwrap();
    let (status, e) = error_of(r).await;
    assert_eq!(status, 401, "{e}");
    assert_eq!(e["error"]["code"], "invalid_api_key");
}

#[tokio::test]
async fn a_chat_request_with_an_ordinary_image_is_accepted() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("vision", &[]).await;
    // A 1.5 MB photo as a data URL: over the old 1 MiB limit, far under the default.
    let image = format!("data:image/jpeg;base64,{}", "A".repeat(1_500_000));
    let r = app
        .chat(
            &token,
            json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is in this picture?"},
                {"type": "image_url", "image_url": {"url": image}},
            ]}]}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
