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
        "/verify-email".to_owned(),
        "/verify-email/resend".to_owned(),
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

#[tokio::test]
async fn dashboard_pages_are_no_store_and_static_assets_keep_their_caching() {
    let app = spawn_app().await;
    for path in ["/login", "/signup"] {
        assert_eq!(
            app.get(path).await.headers()["cache-control"],
            "no-store",
            "{path}"
        );
    }
    app.signed_up().await;
    app.create_key("cached", &[]).await;
    let id = app.key_id("cached").await;
    for path in [
        "/".to_owned(),
        "/keys".to_owned(),
        "/keys/new".to_owned(),
        format!("/keys/{id}/edit"),
        format!("/keys/{id}/delete"),
        "/usage".to_owned(),
        "/usage.csv".to_owned(),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    let r = app.get("/static/app.css").await;
    assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
}

#[tokio::test]
async fn head_on_dashboard_pages_answers_like_get_without_a_body() {
    let app = spawn_app().await;
    app.signed_up().await;
    for path in ["/", "/keys", "/keys/new", "/usage", "/static/app.css"] {
        let get = app.get(path).await;
        let head = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(head.status(), 200, "{path}");
        for h in ["content-type", "cache-control", "content-security-policy"] {
            assert_eq!(head.headers().get(h), get.headers().get(h), "{path} {h}");
        }
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }
    // Byte for byte: headers, then nothing (no body on the wire).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    s.write_all(b"HEAD /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    assert_eq!(body, "", "no body after a HEAD");
}

/// The SQLite file, its WAL and shared memory, the usage journal and the lock file hold
/// account data: readable by the service's user only, whatever the umask.
#[tokio::test]
async fn sqlite_files_are_created_owner_only() {
    if is_postgres() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lowrouter.db");
    let url = format!("sqlite://{}", db.display());
    let app = spawn_app_with(|s| s.database_url = url).await;
    app.signed_up().await;
    let token = app.create_key("files", &[]).await;
    assert_eq!(app.echo(&token, "hello").await.status(), 200);
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("lowrouter.db") {
            continue;
        }
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
        seen.push(name);
    }
    seen.sort();
    for expected in [
        "lowrouter.db",
        "lowrouter.db-shm",
        "lowrouter.db-wal",
        "lowrouter.db.lock",
        "lowrouter.db.usage-journal-0",
        "lowrouter.db.usage-journal-1",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected} in {seen:?}");
    }
}

/// Cookies are `Secure` when the dashboard's public address is HTTPS, without a second
/// setting to remember; an explicit `cookie_secure` still wins.
#[tokio::test]
async fn cookies_follow_an_https_public_address() {
    async fn form_cookie(app: &TestApp) -> String {
        let r = app.get("/signup").await;
        r.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
    let app = spawn_app_with(|s| s.public_base_url = Some("https://keys.example".into())).await;
    let cookie = form_cookie(&app).await;
    assert!(cookie.contains("; Secure"), "{cookie}");
    let app = spawn_app().await;
    let cookie = form_cookie(&app).await;
    assert!(!cookie.is_empty() && !cookie.contains("Secure"), "{cookie}");
    let app = spawn_app_with(|s| {
        s.public_base_url = Some("https://keys.example".into());
        s.cookie_secure = Some(false);
    })
    .await;
    assert!(!form_cookie(&app).await.contains("Secure"));
}
