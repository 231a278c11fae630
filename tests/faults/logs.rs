//! Secrets never reach the logs, even at debug level.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_contain_no_secret() {
    // FAULTS_SECRETS_RUST_LOG=trace tries a more talkative level by hand.
    let log_filter = std::env::var("FAULTS_SECRETS_RUST_LOG").unwrap_or_else(|_| {
        "debug,sqlx=debug,actix_web=debug,actix_http=debug,actix_server=debug,actix_session=debug"
            .into()
    });
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_database(dir.path()).await;
    // Email verification on, with a password in the SMTP URL. Nothing listens there: each
    // mail fails (and logs its failure); the link is planted in the database below.
    let smtp_password = "smtp-Pa55word-never-logged";
    let smtp_url = format!("smtp://mailer:{smtp_password}@127.0.0.1:{}", free_port());
    let env = [
        ("RUST_LOG", log_filter.as_str()),
        ("LOWROUTER_REQUIRE_EMAIL_VERIFICATION", "true"),
        ("LOWROUTER_SMTP_URL", smtp_url.as_str()),
        ("LOWROUTER_MAIL_FROM", "noreply@example.test"),
        ("LOWROUTER_PUBLIC_BASE_URL", "https://keys.example.test"),
    ];
    let mut server = Server::start(dir.path(), &db_url, "secrets", &env).await;
    let db = Db(db_url);
    let api = api_client();
    let b = Browser::new(&server);

    // Sign up, verify the email through its link (the page, then its form), log out, a
    // failed login, log in again.
    let email = b.signed_up().await;
    let link_token = lowrouter::domain::VerifyToken::generate();
    let now = lowrouter::domain::time_util::now_ms();
    db.i64(&format!(
        "insert into email_verification_tokens (token_hash, account_id, created_at, expires_at) \
         values ('{}', {}, {now}, {}) returning id",
        link_token.hash().0,
        db.account_id(&email).await,
        now + 3_600_000
    ))
    .await;
    let link = format!("/verify-email?token={}", link_token.expose());
    let r = b
        .post_form("/verify-email", &link, &[("token", link_token.expose())])
        .await;
    assert_eq!(r.status(), 303, "verified");
    // Resend, verified: nothing to do.
    assert_eq!(
        b.post_form("/verify-email/resend", "/keys", &[])
            .await
            .status(),
        303,
        "verified: nothing to resend"
    );
    assert_eq!(b.post_form("/logout", "/keys", &[]).await.status(), 303);
    let wrong_password = "Wr0ng-but-also-secret-pa55word";
    let r = b
        .post_form(
            "/login",
            "/login",
            &[("email", email.as_str()), ("password", wrong_password)],
        )
        .await;
    assert_eq!(r.status(), 401, "wrong password refused");
    let r = b
        .post_form(
            "/login",
            "/login",
            &[("email", email.as_str()), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status(), 303);

    // Create a key and use it every way there is.
    let token = b.create_key("logged", &[]).await;
    for stream in [false, true] {
        let r = echo(&api, &server.base, &token, "hello logs", stream)
            .await
            .unwrap();
        assert!(r.complete, "stream={stream}");
        let g = r.generation_id.unwrap();
        for path in [
            format!("/api/v1/generation/{g}"),
            "/api/v1/key".into(),
            "/api/v1/models".into(),
            "/api/v1/credits".into(),
        ] {
            let r = api
                .get(server.url(&path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
        }
        assert_eq!(b.get(&format!("/usage/{g}")).await.status(), 200);
    }
    // A mistyped token (one character off: nearly the secret) and a wrong header.
    let mut typo = token.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    for auth in [
        format!("Bearer {typo}"),
        format!("bearer {token}"),
        token.clone(),
    ] {
        let r = api
            .get(server.url("/api/v1/key"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Delete it; the next use fails.
    let id = b.key_id("logged").await;
    assert_eq!(b.delete_key(id).await.status(), 303);
    let r = echo(&api, &server.base, &token, "after delete", false)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(b.get_html("/usage").await.contains("logged"));
    assert_eq!(b.post_form("/logout", "/keys", &[]).await.status(), 303);

    let session_secret = db
        .texts("select value from app_secrets where name = 'session_key'")
        .await
        .pop()
        .expect("a session secret was generated");
    server.kill9();
    let logs = server.logs();
    // FAULTS_DUMP_LOGS=<file> keeps the logs for reading.
    if let Ok(path) = std::env::var("FAULTS_DUMP_LOGS") {
        std::fs::write(path, &logs).unwrap();
    }

    // The run really logged at debug level (else this test would pass vacuously).
    assert!(
        logs.contains("DEBUG"),
        "no debug output:\n{}",
        &logs[..logs.len().min(2000)]
    );
    assert!(logs.contains("key created") && logs.contains("key revoked"));

    assert!(logs.contains("email verified"));
    let mut secrets: Vec<(String, String)> = vec![
        ("verification token".into(), link_token.expose().to_owned()),
        ("SMTP password".into(), smtp_password.into()),
        ("token".into(), token.clone()),
        ("token's secret part".into(), token[10..51].to_owned()),
        ("mistyped token".into(), typo[10..51].to_owned()),
        ("password".into(), PASSWORD.into()),
        ("wrong password".into(), wrong_password.into()),
        ("session secret".into(), session_secret.clone()),
        (
            "session secret (first half)".into(),
            session_secret[..64].to_owned(),
        ),
        (
            "session secret (second half)".into(),
            session_secret[64..].to_owned(),
        ),
    ];
    let cookies = b.cookies_seen.lock().unwrap().clone();
    assert!(cookies.len() >= 2, "session cookies were issued");
    for c in cookies {
        let decoded = percent_decode(&c);
        secrets.push(("session cookie".into(), c));
        secrets.push(("session cookie (decoded)".into(), decoded));
    }
    let csrf = b.csrf_seen.lock().unwrap().clone();
    assert!(!csrf.is_empty());
    for t in csrf {
        secrets.push(("CSRF token".into(), t));
    }
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} too short to search for");
        if let Some(at) = logs.find(secret.as_str()) {
            let line_start = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!(
                "the logs contain the {what}:\n{}",
                &logs[line_start..line_end]
            );
        }
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
