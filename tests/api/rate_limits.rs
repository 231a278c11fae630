//! Per-key rate limits: requests per minute and concurrent requests, set on the form or by
//! the management API; 429 `rate_limit_exceeded` with `Retry-After` and `X-RateLimit-*`
//! beyond them; on PostgreSQL the limit holds across processes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn requests_per_minute_beyond_the_limit_are_429() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("rpm", &[("rpm_limit", "2")]).await;
    let other = app.create_key("free", &[]).await;
    let key: Value = app.api_json(&token, "/api/v1/key").await;
    assert_eq!(key["data"]["rpm_limit"], 2);
    assert!(key["data"]["concurrency_limit"].is_null());
    for _ in 0..2 {
        assert_eq!(app.echo(&token, "x").await.status(), 200);
    }
    let r = app.echo(&token, "x").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(header(&r, "x-ratelimit-limit"), "2");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    let reset: u64 = header(&r, "x-ratelimit-reset").parse().unwrap();
    assert!((1..=60).contains(&reset), "{reset}");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    // Another key is not affected.
    assert_eq!(app.echo(&other, "x").await.status(), 200);
}

#[tokio::test]
async fn the_form_checks_the_limits() {
    let app = spawn_app().await;
    app.signed_up().await;
    for (field, bad) in [
        ("rpm_limit", "0"),
        ("rpm_limit", "1.5"),
        ("concurrency_limit", "-1"),
    ] {
        let r = app
            .create_key_response(&key_fields("bad", &[(field, bad)]))
            .await;
        assert_eq!(r.status(), 422, "{field}={bad}");
        assert!(r.text().await.unwrap().contains("whole number"));
    }
    app.create_key("ok", &[("rpm_limit", "60"), ("concurrency_limit", "4")])
        .await;
    assert!(app
        .get_html("/keys")
        .await
        .contains("Rate: 60 requests/min · 4 at once"));
    let id = app.key_id("ok").await;
    let html = app.get_html(&format!("/keys/{id}/edit")).await;
    assert!(html.contains("name=\"rpm_limit\" type=\"text\" inputmode=\"numeric\" value=\"60\""));
}

#[tokio::test]
async fn concurrent_requests_beyond_the_limit_are_429_until_one_ends() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app
        .create_key("one-at-a-time", &[("concurrency_limit", "1")])
        .await;
    // A stream of 2.4 s holds the only slot until its end.
    let streaming = app.chat(
        &token,
        json!({"model": "test/drip", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    );
    let (stream, refused) = tokio::join!(
        async {
            let r = streaming.await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        },
        async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            app.echo(&token, "meanwhile").await
        }
    );
    assert!(stream.contains("tick"), "the stream ran: {stream}");
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-limit"), "1");
    assert_eq!(header(&refused, "retry-after"), "1");
    // The slot is back once the stream ended (PostgreSQL gives it back in the background).
    let mut status = 0;
    for _ in 0..20 {
        status = app.echo(&token, "after").await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
}

/// Two servers on one PostgreSQL database: together they admit the key's limit, not twice it.
#[tokio::test]
async fn limits_hold_across_processes_on_postgres() {
    if !is_postgres() {
        return;
    }
    let a = spawn_app().await;
    a.signed_up().await;
    let token = a.create_key("shared", &[("rpm_limit", "3")]).await;
    let b = spawn_peer(&a).await;
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..8 {
        let server = if i % 2 == 0 { &a } else { &b };
        match server.echo(&token, "x").await.status().as_u16() {
            200 => ok += 1,
            429 => limited += 1,
            s => panic!("status {s}"),
        }
    }
    // At most 3 in this minute (a minute boundary between the requests may admit 3 more).
    assert!(
        ok == 3 || (ok <= 6 && limited >= 2),
        "ok {ok}, limited {limited}"
    );

    let slot = a
        .create_key("one-slot", &[("concurrency_limit", "1")])
        .await;
    let streaming = a.chat(
        &slot,
        json!({"model": "test/drip", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    );
    let (_, on_b) = tokio::join!(async { streaming.await.text().await.unwrap() }, async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        b.echo(&slot, "meanwhile").await.status()
    });
    assert_eq!(on_b, 429, "the other process sees the slot taken");
}
