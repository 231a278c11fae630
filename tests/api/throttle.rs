//! Logins and sign-ups under abuse: parallel guessing, lock-out from elsewhere, shared
//! addresses, forwarding headers, hash floods, sign-up floods.

use crate::helpers::*;

fn loopback_is_a_proxy(s: &mut lowrouter::config::Settings) {
    s.trusted_proxies = vec![lowrouter::config::parse_proxy("127.0.0.1").unwrap()];
}

/// A fresh client that asks for `path`'s form and posts it, both with `X-Forwarded-For:
/// from`.
async fn post_from(
    app: &TestApp,
    from: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    post_with(app, &[("x-forwarded-for", from)], path, fields).await
}

/// A fresh client that asks for `path`'s form and posts it, both with `headers`.
async fn post_with(
    app: &TestApp,
    headers: &[(&str, &str)],
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let client = new_client();
    let with_headers = |mut r: reqwest::RequestBuilder| {
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r
    };
    let page = with_headers(client.get(app.url(path)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut body = vec![("csrf_token", csrf_of(&page))];
    body.extend(fields.iter().map(|(k, v)| (*k, (*v).to_owned())));
    with_headers(client.post(app.url(path)))
        .form(&body)
        .send()
        .await
        .unwrap()
}

async fn login_from(app: &TestApp, from: &str, email: &str, password: &str) -> u16 {
    post_from(
        app,
        from,
        "/login",
        &[("email", email), ("password", password)],
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn parallel_wrong_passwords_get_at_most_the_budget_checked() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    app.logout().await;
    let csrf = csrf_of(&app.get_html("/login").await);
    let attempts = (0..40).map(|_| {
        app.client
            .post(app.url("/login"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("email", email.as_str()),
                ("password", "wrong password!"),
            ])
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + refused, 40, "{statuses:?}");
    assert!(
        checked <= 5,
        "{checked} passwords checked with a budget of 5"
    );
}

#[tokio::test]
async fn failures_elsewhere_or_for_other_emails_do_not_lock_out_the_owner() {
    let app = spawn_app_with(loopback_is_a_proxy).await;
    let email = app.signed_up().await;
    app.logout().await;
    let attacker = "203.0.113.5";
    for _ in 0..5 {
        assert_eq!(
            login_from(&app, attacker, &email, "wrong password!").await,
            401
        );
    }
    assert_eq!(
        login_from(&app, attacker, &email, PASSWORD).await,
        429,
        "the guessing address is throttled for this email"
    );
    assert_eq!(
        login_from(&app, "198.51.100.7", &email, PASSWORD).await,
        303,
        "the owner, elsewhere, logs in"
    );

    // Everyone behind one address: a user's mistakes with made-up emails lock out no one else.
    let office = "192.0.2.1";
    for i in 0..5 {
        let made_up = format!("nobody{i}@example.com");
        assert_eq!(
            login_from(&app, office, &made_up, "wrong password!").await,
            401
        );
    }
    assert_eq!(login_from(&app, office, &email, PASSWORD).await, 303);
}

#[tokio::test]
async fn forwarding_headers_are_ignored_from_untrusted_peers() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    app.logout().await;
    for i in 0..5 {
        let from = format!("203.0.113.{i}");
        assert_eq!(
            login_from(&app, &from, &email, "wrong password!").await,
            401
        );
    }
    assert_eq!(
        login_from(&app, "198.51.100.7", &email, PASSWORD).await,
        429,
        "a claimed X-Forwarded-For does not make a new address"
    );

    // X-Forwarded-Host does not let another site's Origin pass.
    let csrf = csrf_of(&app.get_html("/signup").await);
    let r = app
        .client
        .post(app.url("/signup"))
        .header("origin", "https://evil.example")
        .header("x-forwarded-host", "evil.example")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "mallory@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_trusted_proxy_forwarded_host_is_believed() {
    let app = spawn_app_with(loopback_is_a_proxy).await;
    let csrf = csrf_of(&app.get_html("/signup").await);
    let r = app
        .client
        .post(app.url("/signup"))
        .header("origin", "https://keys.example")
        .header("x-forwarded-host", "keys.example")
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "proxied@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn concurrent_sign_ups_are_answered_or_asked_to_retry_never_500() {
    let app = spawn_app_with(|s| {
        s.password_hash_workers = 1;
        s.password_hash_queue = 1;
    })
    .await;
    let mut forms = Vec::new();
    for i in 0..30 {
        let client = new_client();
        let page = client.get(app.url("/signup")).send().await.unwrap();
        let csrf = csrf_of(&page.text().await.unwrap());
        forms.push((client, csrf, format!("crowd{i}@example.com")));
    }
    let posts = forms.iter().map(|(client, csrf, email)| {
        client
            .post(app.url("/signup"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("email", email.as_str()),
                ("password", PASSWORD),
            ])
            .send()
    });
    let mut created = 0;
    let mut busy = 0;
    for r in futures_util::future::join_all(posts).await {
        let r = r.unwrap();
        match r.status().as_u16() {
            303 => created += 1,
            503 => {
                busy += 1;
                assert_eq!(r.headers()["retry-after"], "2");
                assert!(r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"));
                assert!(r.text().await.unwrap().contains("try again"));
            }
            other => panic!("sign-up answered {other}"),
        }
    }
    assert_eq!(created + busy, 30);
    assert!(created >= 2, "one running and one queued get through");
    assert!(busy > 0, "beyond one worker and one queued, 503");
    // The refused ones did not use up the sign-up budget, and the pool is free again.
    let r = app.signup("after-the-crowd@example.com").await;
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn sign_ups_are_throttled_per_address() {
    let app = spawn_app_with(|s| {
        loopback_is_a_proxy(s);
        s.signup_max_per_hour = 5;
    })
    .await;
    let signup = |from: &'static str, email: String| {
        let app = &app;
        async move {
            post_from(
                app,
                from,
                "/signup",
                &[("email", email.as_str()), ("password", PASSWORD)],
            )
            .await
        }
    };
    for i in 0..5 {
        let r = signup("203.0.113.9", format!("farm{i}@example.com")).await;
        assert_eq!(r.status(), 303, "sign-up {i}");
    }
    let r = signup("203.0.113.9", "farm5@example.com".into()).await;
    assert_eq!(r.status(), 429);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Too many accounts were created from your network"),
        "{html}"
    );
    assert!(
        html.contains("value=\"farm5@example.com\""),
        "the form comes back"
    );
    assert_eq!(
        app.scalar_i64("select count(*) from accounts where email = 'farm5@example.com'")
            .await,
        0
    );
    let r = signup("198.51.100.1", "elsewhere@example.com".into()).await;
    assert_eq!(r.status(), 303, "other addresses are not affected");
}

/// nginx's usual `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` appends the
/// client's address and passes the client's own `Forwarded` through untouched: only the
/// named header's rightmost untrusted address counts.
#[tokio::test]
async fn a_client_behind_an_appending_proxy_cannot_choose_its_address() {
    let app = spawn_app_with(|s| {
        loopback_is_a_proxy(s);
        s.signup_max_per_hour = 5;
    })
    .await;
    let mut accepted = 0;
    for i in 0..12 {
        let forged_forwarded = format!("for=198.51.100.{i}");
        let appended = format!("192.0.2.{i}, 203.0.113.9");
        let email = format!("forger{i}@example.com");
        let r = post_with(
            &app,
            &[
                ("forwarded", forged_forwarded.as_str()),
                ("x-real-ip", "198.51.100.200"),
                ("x-forwarded-for", appended.as_str()),
            ],
            "/signup",
            &[("email", email.as_str()), ("password", PASSWORD)],
        )
        .await;
        match r.status().as_u16() {
            303 => accepted += 1,
            429 => {}
            other => panic!("sign-up {i}: {other}"),
        }
    }
    assert_eq!(
        accepted, 5,
        "the budget of 203.0.113.9, whatever else was claimed"
    );

    // Told to read `Forwarded` (its proxy writes that one), X-Forwarded-For is the claim.
    let app = spawn_app_with(|s| {
        loopback_is_a_proxy(s);
        s.signup_max_per_hour = 5;
        s.trusted_proxy_header = lowrouter::config::ProxyHeader::Forwarded;
    })
    .await;
    let mut accepted = 0;
    for i in 0..8 {
        let forged = format!("198.51.100.{i}");
        let email = format!("other{i}@example.com");
        let r = post_with(
            &app,
            &[
                ("x-forwarded-for", forged.as_str()),
                ("forwarded", "for=203.0.113.7"),
            ],
            "/signup",
            &[("email", email.as_str()), ("password", PASSWORD)],
        )
        .await;
        accepted += usize::from(r.status() == 303);
    }
    assert_eq!(accepted, 5);
}

/// The snippets on a reveal page name where to send requests: the operator's
/// `public_base_url`, else this request's address; never a forwarding header from a peer
/// that is not a trusted proxy.
#[tokio::test]
async fn snippets_never_take_an_address_from_an_untrusted_header() {
    async fn revealed_base(app: &TestApp, headers: &[(&str, &str)]) -> String {
        app.signed_up().await;
        let body = app.form_body("/keys/new", &key_fields("k", &[])).await;
        let mut r = app.client.post(app.url("/keys"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let html = r.form(&body).send().await.unwrap().text().await.unwrap();
        between(
            &html,
            "<code id=\"snippet-curl\">curl ",
            "/api/v1/chat/completions",
        )
        .unwrap_or_else(|| panic!("no base_url in {html}"))
        .to_owned()
    }
    let forged = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "host=evil.example;proto=https"),
    ];
    let app = spawn_app().await;
    let base = revealed_base(&app, &forged).await;
    assert_eq!(base, app.address, "this request's own address");

    let app = spawn_app_with(|s| s.public_base_url = Some("https://keys.example".into())).await;
    assert_eq!(revealed_base(&app, &forged).await, "https://keys.example");

    // From a trusted proxy, its own header family is believed.
    let app = spawn_app_with(loopback_is_a_proxy).await;
    assert_eq!(
        revealed_base(&app, &forged).await,
        "https://evil.example",
        "what the trusted proxy says"
    );
}
