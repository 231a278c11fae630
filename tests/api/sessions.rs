//! Sessions: none for strangers, an absolute end, and "Log out other sessions".

use std::time::Duration;

use crate::helpers::*;

/// A client that keeps no cookies: every request is a stranger's first.
fn cookieless() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn session_rows(app: &TestApp) -> i64 {
    app.scalar_i64("select count(*) from sessions").await
}

#[tokio::test]
async fn showing_the_login_and_signup_forms_writes_no_session() {
    let app = spawn_app().await;
    let before = session_rows(&app).await;
    let stranger = cookieless();
    for i in 0..50 {
        let path = if i % 2 == 0 { "/login" } else { "/signup" };
        let r = stranger.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.cookies().all(|c| c.name() != "lowrouter_session"),
            "no session cookie for a stranger"
        );
    }
    assert_eq!(session_rows(&app).await, before, "no session rows written");

    // The forms still work, and signing in is what writes the first row.
    let email = app.signed_up().await;
    assert_eq!(session_rows(&app).await, before + 1);
    app.logout().await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), 303);
    assert_eq!(app.get("/keys").await.status(), 200);
}

#[tokio::test]
async fn the_public_forms_token_must_match_its_cookie() {
    let app = spawn_app().await;
    let fields = |csrf: &str| {
        vec![
            ("csrf_token", csrf.to_owned()),
            ("email", "eve@example.com".to_owned()),
            ("password", PASSWORD.to_owned()),
        ]
    };
    // A real token, but sent without the cookie it belongs to.
    let page = cookieless().get(app.url("/signup")).send().await.unwrap();
    let nonce_cookie = page
        .cookies()
        .find(|c| c.name() == "lowrouter_form")
        .map(|c| format!("{}={}", c.name(), c.value()))
        .expect("the form page sets its nonce cookie");
    let token = csrf_of(&page.text().await.unwrap());
    for path in ["/signup", "/login"] {
        let r = cookieless()
            .post(app.url(path))
            .form(&fields(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}: token without its cookie");
        let r = cookieless()
            .post(app.url(path))
            .header("cookie", &nonce_cookie)
            .form(&fields(""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}: cookie without a token");
        let r = cookieless()
            .post(app.url(path))
            .header("cookie", &nonce_cookie)
            .form(&fields(&"0".repeat(64)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}: a made-up token");
        let r = cookieless()
            .post(app.url(path))
            .header("cookie", &nonce_cookie)
            .header("origin", "https://evil.example")
            .form(&fields(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}: another origin");
    }
    // Token and cookie together pass.
    let r = cookieless()
        .post(app.url("/signup"))
        .header("cookie", &nonce_cookie)
        .form(&fields(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn sessions_end_after_their_maximum_age_however_active() {
    let app = spawn_app_with(|s| s.session_max_age = Duration::from_secs(2)).await;
    app.signed_up().await;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(app.get("/keys").await.status(), 200, "active session");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = app.get("/keys").await;
    assert_eq!(r.status(), 303, "ended at its maximum age despite activity");
    assert_eq!(r.headers()["location"], "/login");
}

#[tokio::test]
async fn log_out_other_sessions_ends_only_the_others() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    let laptop = spawn_clone(&app);
    let phone = spawn_clone(&app);
    for device in [&laptop, &phone] {
        assert_eq!(device.login(&email, PASSWORD).await.status(), 303);
        assert_eq!(device.get("/keys").await.status(), 200);
    }
    let someone_else = spawn_clone(&app);
    someone_else.signed_up().await;

    let keys = app.get_html("/keys").await;
    assert!(keys.contains("Log out other sessions"), "in the layout");
    let r = app.post_form("/sessions/others/logout", "/keys", &[]).await;
    assert_eq!(r.status(), 303);
    assert!(app
        .get_html("/")
        .await
        .contains("Logged out 2 other sessions."));
    assert_eq!(app.get("/keys").await.status(), 200, "this session stays");
    for device in [&laptop, &phone] {
        assert_eq!(
            device.get("/keys").await.status(),
            303,
            "other session ended"
        );
    }
    assert_eq!(
        someone_else.get("/keys").await.status(),
        200,
        "other accounts' sessions are untouched"
    );

    let r = app
        .client
        .post(app.url("/sessions/others/logout"))
        .form(&[("csrf_token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "CSRF-checked");
}
