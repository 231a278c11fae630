use crate::helpers::*;

#[tokio::test]
async fn sign_up_logs_in_and_grants_credits() {
    let app = spawn_app().await;
    let r = app.signup("Ann@Example.com").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/keys");
    let html = app.get_html("/keys").await;
    assert!(html.contains("ann@example.com"), "email shown, normalised");
    assert!(
        html.contains("<strong>5.00</strong>"),
        "sign-up grant in the balance"
    );
    assert!(html.contains("No API keys yet"), "empty state");
}

#[tokio::test]
async fn dashboard_requires_login() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/keys",
        "/keys/new",
        "/usage",
        "/usage.csv",
        "/keys/1/edit",
        "/keys/1/delete",
        "/usage/gen-x",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/login", "{path}");
    }
}

#[tokio::test]
async fn sign_up_validation_keeps_input() {
    let app = spawn_app().await;
    let r = app
        .post_form(
            "/signup",
            "/signup",
            &[
                ("email", "not-an-email".into()),
                ("password", "short".into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let html = r.text().await.unwrap();
    assert!(html.contains("Enter a valid email address"));
    assert!(html.contains("Use at least 10 characters"));
    assert!(html.contains("value=\"not-an-email\""), "input kept");

    let long = "x".repeat(1025);
    let r = app
        .post_form(
            "/signup",
            "/signup",
            &[("email", "a@b.io".into()), ("password", long)],
        )
        .await;
    assert!(r.text().await.unwrap().contains("Use at most 1024 bytes"));

    app.signup("dup@example.com").await;
    let other = spawn_clone(&app);
    let r = other.signup("DUP@example.com").await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("already exists"));
}

#[tokio::test]
async fn login_and_logout() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    assert_eq!(app.logout().await.status(), 303);
    assert_eq!(app.get("/keys").await.status(), 303, "logged out");

    let wrong = app.login(&email, "wrong password!").await;
    assert_eq!(wrong.status(), 401);
    let wrong_html = wrong.text().await.unwrap();
    let unknown = app.login("nobody@example.com", "wrong password!").await;
    assert_eq!(unknown.status(), 401);
    let unknown_html = unknown.text().await.unwrap();
    let msg = "Email or password is incorrect.";
    assert!(
        wrong_html.contains(msg) && unknown_html.contains(msg),
        "same message for both"
    );

    let ok = app.login(&email, PASSWORD).await;
    assert_eq!(ok.status(), 303);
    assert_eq!(app.get("/keys").await.status(), 200);
}

#[tokio::test]
async fn session_id_is_renewed_at_login_and_dead_after_logout() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    app.logout().await;
    // Anonymous session (from the login page's CSRF token).
    let before = app.client.get(app.url("/login")).send().await.unwrap();
    let anon = before
        .cookies()
        .find(|c| c.name() == "lowrouter_session")
        .map(|c| c.value().to_owned());
    let r = app.login(&email, PASSWORD).await;
    let cookie = r
        .cookies()
        .find(|c| c.name() == "lowrouter_session")
        .expect("session cookie set at login");
    assert!(cookie.http_only(), "HttpOnly");
    assert!(cookie.same_site_lax(), "SameSite=Lax");
    let logged_in = cookie.value().to_owned();
    assert_ne!(Some(logged_in.clone()), anon, "renewed at login");

    // Replay the logged-in cookie after logout: it no longer works.
    app.logout().await;
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = replay
        .get(app.url("/keys"))
        .header("cookie", format!("lowrouter_session={logged_in}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "old cookie is dead after logout");
}

#[tokio::test]
async fn failed_logins_are_throttled() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    app.logout().await;
    for _ in 0..5 {
        assert_eq!(app.login(&email, "wrong password!").await.status(), 401);
    }
    let r = app.login(&email, PASSWORD).await;
    assert_eq!(
        r.status(),
        429,
        "even the right password waits once throttled"
    );
    assert!(r.text().await.unwrap().contains("Too many failed attempts"));
}

#[tokio::test]
async fn session_expires_after_idle_time() {
    let app = spawn_app_with(|s| s.session_idle = std::time::Duration::from_secs(1)).await;
    app.signed_up().await;
    assert_eq!(app.get("/keys").await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(app.get("/keys").await.status(), 303, "idle session expired");
}

#[tokio::test]
async fn weak_passwords_are_refused_with_the_reason() {
    let app = spawn_app().await;
    let email = "dana.scully@example.com";
    for (password, why) in [
        ("password12", "most commonly used passwords"),
        ("1234567890", "most commonly used passwords"),
        ("abcdefghijkl", "simple sequence"),
        ("          ", "single repeated character"),
        (email, "your email address"),
        ("Dana.Scully rules", "your email address"),
        ("my lowrouter key", "name of this service"),
    ] {
        let r = app
            .post_form(
                "/signup",
                "/signup",
                &[("email", email.into()), ("password", password.into())],
            )
            .await;
        assert_eq!(r.status(), 422, "{password:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains(why), "{password:?}: {why}");
    }
    assert_eq!(
        app.scalar_i64("select count(*) from accounts").await,
        0,
        "none was created"
    );
    let r = app
        .post_form(
            "/signup",
            "/signup",
            &[
                ("email", email.into()),
                ("password", "tea kettle on the moon".into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "a passphrase without composition rules");
}
