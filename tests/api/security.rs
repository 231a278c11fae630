use crate::helpers::*;

/// Every state-changing route: no token, a wrong token, and a foreign Origin are refused.
#[tokio::test]
async fn csrf_is_checked_on_every_post() {
    let app = spawn_app().await;
    app.signed_up().await;
    app.create_key("k", &[]).await;
    let id = app.key_id("k").await;
    let routes = [
        "/signup".to_owned(),
        "/login".to_owned(),
        "/logout".to_owned(),
        "/sessions/others/logout".to_owned(),
        "/keys".to_owned(),
        format!("/keys/{id}/edit"),
        format!("/keys/{id}/disable"),
        format!("/keys/{id}/enable"),
        format!("/keys/{id}/delete"),
    ];
    let good = csrf_of(&app.get_html("/keys").await);
    for route in &routes {
        let none = app
            .client
            .post(app.url(route))
            .form(&[("name", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 403, "{route} without token");
        let wrong = app
            .client
            .post(app.url(route))
            .form(&[("csrf_token", "wrong"), ("name", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403, "{route} with a wrong token");
        let foreign = app
            .client
            .post(app.url(route))
            .header("origin", "https://evil.example")
            .form(&[("csrf_token", good.as_str()), ("name", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 403, "{route} from another origin");
    }
    let keys = app.get_html("/keys").await;
    assert!(
        keys.contains(">k</a>") && keys.contains("Active"),
        "nothing changed"
    );
}

#[tokio::test]
async fn security_headers_on_every_page() {
    let app = spawn_app().await;
    for path in ["/login", "/signup", "/nope"] {
        check_headers(&app.get(path).await, path);
    }
    app.signed_up().await;
    for path in ["/", "/keys", "/keys/new", "/usage"] {
        check_headers(&app.get(path).await, path);
    }
    let r = app.create_key_response(&key_fields("h", &[])).await;
    check_headers(&r, "reveal");
    assert_eq!(r.headers()["cache-control"], "no-store");
}

fn check_headers(r: &reqwest::Response, what: &str) {
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}");
    assert!(!csp.contains("unsafe-inline"), "{what}");
    assert!(csp.contains("script-src 'self'"), "{what}");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{what}");
    assert!(r.headers().contains_key("referrer-policy"), "{what}");
}

#[tokio::test]
async fn pages_have_no_inline_script_or_style() {
    let app = spawn_app().await;
    app.signed_up().await;
    app.create_key("x", &[]).await;
    for path in ["/", "/keys", "/keys/new", "/usage"] {
        let html = app.get_html(path).await;
        assert!(
            !html.contains("<script>") && !html.contains("style=") && !html.contains("onclick"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn hostile_form_input_is_escaped_and_never_a_500() {
    let app = spawn_app().await;
    app.signed_up().await;
    let payloads = [
        "<img src=x onerror=alert(1)>",
        "\"><script>alert(1)</script>",
        "ünïcödé 🔑 キー",
        "a\u{202e}b",
        "'; drop table api_keys; --",
    ];
    for p in payloads {
        let r = app.create_key_response(&key_fields(p, &[])).await;
        assert!(r.status() == 200 || r.status() == 422, "{p}");
    }
    let keys = app.get_html("/keys").await;
    assert!(!keys.contains("<img src=x") && !keys.contains("<script>alert"));
    assert!(keys.contains("ünïcödé 🔑 キー"));
    assert!(
        keys.contains("drop table"),
        "SQL-looking names are just names"
    );
    let r = app
        .create_key_response(&key_fields(
            &"x".repeat(100_000),
            &[("daily_limit", &"9".repeat(5000))],
        ))
        .await;
    assert_eq!(r.status(), 422);
    let r = app
        .client
        .post(app.url("/keys"))
        .body(vec![b'a'; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "body limit");
}
