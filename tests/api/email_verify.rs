//! Email verification (`require_email_verification`): the mail through a real SMTP server,
//! the link's page and form, key creation refused until then, the grant on verification,
//! every kind of bad link, and the resend limits.

use std::time::Duration;

use lowrouter::config::{Secret, Settings};
use lowrouter::domain::VerifyToken;
use reqwest::header;
use serde_json::Value;

use crate::helpers::*;
use crate::smtp_sink::SmtpSink;

/// Links in mail point here (`public_base_url`), never at the request's `Host`; the tests
/// follow them on the test server.
pub(crate) const PUBLIC: &str = "https://keys.example.test";

pub(crate) fn verification_on(s: &mut Settings, smtp_url: String) {
    s.require_email_verification = true;
    s.smtp_url = Some(Secret::new(smtp_url));
    s.mail_from = Some("LowRouter <noreply@example.test>".into());
    s.public_base_url = Some(PUBLIC.into());
}

/// An SMTP URL on which nothing listens: every mail fails (in the background).
fn dead_smtp() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("smtp://127.0.0.1:{}", l.local_addr().unwrap().port())
}

/// The link in a received mail, checked to be in both parts; returned as a path on the
/// test server.
pub(crate) fn link_of(mail: &Value) -> String {
    let text = mail["text"].as_str().unwrap();
    let start = text
        .find(&format!("{PUBLIC}/verify-email?token="))
        .expect("the text part holds the link");
    let link = text[start..].split_whitespace().next().unwrap();
    assert!(
        mail["html"]
            .as_str()
            .unwrap()
            .contains(&format!("href=\"{link}\"")),
        "the HTML part links to it too"
    );
    link.strip_prefix(PUBLIC).unwrap().to_owned()
}

pub(crate) fn token_in(path: &str) -> &str {
    path.split_once("token=").unwrap().1
}

async fn account_id(app: &TestApp, email: &str) -> i64 {
    app.scalar_i64(&format!("select id from accounts where email = '{email}'"))
        .await
}

async fn balance(app: &TestApp, email: &str) -> i64 {
    app.scalar_i64(&format!(
        "select balance from accounts where email = '{email}'"
    ))
    .await
}

/// Opens a link's page and sends its form, as a person presses the button.
pub(crate) async fn follow(app: &TestApp, path: &str) -> reqwest::Response {
    let page = app.get(path).await;
    assert_eq!(page.status(), 200, "the link's page opens");
    let html = page.text().await.unwrap();
    assert!(html.contains("Verify my email"), "{html}");
    let token = between(&html, "name=\"token\" value=\"", "\"").unwrap();
    app.client
        .post(app.url("/verify-email"))
        .form(&[("csrf_token", csrf_of(&html)), ("token", token.to_owned())])
        .send()
        .await
        .unwrap()
}

/// Sends the verification form with `token`, from a signed-out client.
async fn post_token(app: &TestApp, token: &str) -> reqwest::Response {
    // Any public page sets the form cookie and gives its token.
    let html = app.get_html("/login").await;
    app.client
        .post(app.url("/verify-email"))
        .form(&[("csrf_token", csrf_of(&html)), ("token", token.to_owned())])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sign_up_mail_link_verify_then_create_a_key() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_app_with(|s| verification_on(s, sink.url())).await;
    let email = app.signed_up().await;
    let keys = app.get_html("/keys").await;
    assert!(keys.contains("We sent a link to"), "the welcome says so");
    assert!(keys.contains("Verify your email address.") && keys.contains("Resend email"));
    assert_eq!(
        balance(&app, &email).await,
        0,
        "the grant waits for verification"
    );

    // Before verification: no key, neither through the page nor the form.
    let page = app.get("/keys/new").await;
    assert_eq!(page.status(), 403);
    let page = page.text().await.unwrap();
    assert!(page.contains("Verify your email address before creating API keys"));
    let r = app.create_key_response(&key_fields("too-early", &[])).await;
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Verify your email address before creating API keys"));
    assert_eq!(app.scalar_i64("select count(*) from api_keys").await, 0);

    // The mail: to the account, from the sender, the link in both parts.
    let mail = &sink.wait_for(1).await[0];
    assert_eq!(mail["rcpt_tos"][0], email.as_str());
    assert_eq!(mail["mail_from"], "noreply@example.test");
    assert_eq!(mail["subject"], "Verify your email address for LowRouter");
    assert!(mail["message_id"]
        .as_str()
        .unwrap()
        .ends_with("@example.test>"));
    let link = link_of(mail);
    let token = token_in(&link).to_owned();
    assert_eq!(token.len(), 43, "32 random bytes, base64url");
    // Only the token's hash is stored.
    let hash = VerifyToken::parse(&token).unwrap().hash().0;
    let stored = app
        .scalar_i64(&format!(
            "select count(*) from email_verification_tokens where token_hash = '{hash}'"
        ))
        .await;
    assert_eq!(stored, 1);
    let plain = app
        .scalar_i64(&format!(
            "select count(*) from email_verification_tokens where token_hash = '{token}'"
        ))
        .await;
    assert_eq!(plain, 0);

    // Opening the link changes nothing (scanners open links): only its form does.
    let other = spawn_clone(&app); // the mail opened on a phone, signed out
    let page = other.get(&link).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()[header::REFERRER_POLICY], "strict-origin");
    assert_eq!(app.get("/keys/new").await.status(), 403, "still unverified");
    let done = follow(&other, &link).await;
    assert_eq!(done.status(), 200);
    let done = done.text().await.unwrap();
    assert!(
        done.contains("Email verified") && done.contains("5.00 credits were added"),
        "{done}"
    );
    assert_eq!(
        balance(&app, &email).await,
        5_000_000,
        "granted on verification"
    );

    // The signed-in browser: no banner, keys work end to end.
    let keys = app.get_html("/keys").await;
    assert!(!keys.contains("Verify your email address."));
    let key = app.create_key("after", &[]).await;
    assert_eq!(app.echo(&key, "hello").await.status(), 200);

    // The link again: nothing more to do, nothing granted twice.
    let again = app.get(&link).await;
    assert_eq!(again.status(), 200);
    assert!(again
        .text()
        .await
        .unwrap()
        .contains("Email already verified"));
    let r = post_token(&other, &token).await;
    assert!(r.text().await.unwrap().contains("Email already verified"));
    assert!(balance(&app, &email).await <= 5_000_000);
}

#[tokio::test]
async fn bad_links_are_refused_with_a_page_that_says_why() {
    // Mail is down: sign-up still works (mail goes out in the background, and fails there).
    let app = spawn_app_with(|s| verification_on(s, dead_smtp())).await;
    let email = app.signed_up().await;
    assert!(app.get_html("/keys").await.contains("Resend email"));
    let id = account_id(&app, &email).await;
    let now = lowrouter::domain::time_util::now_ms();
    let plant = |used_at: Option<i64>, expires_at: i64| {
        let t = VerifyToken::generate();
        let sql = format!(
            "insert into email_verification_tokens (token_hash, account_id, created_at, expires_at, used_at) \
             values ('{}', {id}, {now}, {expires_at}, {})",
            t.hash().0,
            used_at.map_or("null".into(), |u| u.to_string())
        );
        (t.expose().to_owned(), sql)
    };
    let (expired, sql) = plant(None, now - 1);
    app.execute_sql(&sql).await;
    let (used, sql) = plant(Some(now - 5), now + 60_000);
    app.execute_sql(&sql).await;
    let (valid, sql) = plant(None, now + 60_000);
    app.execute_sql(&sql).await;
    let (second, sql) = plant(None, now + 60_000);
    app.execute_sql(&sql).await;
    let unknown = VerifyToken::generate().expose().to_owned();
    let stranger = spawn_clone(&app); // signed out: where the form is sent from below

    for (token, status, says) in [
        (unknown.as_str(), 404, "This link is not valid"),
        (expired.as_str(), 410, "This link has expired"),
        (used.as_str(), 410, "This link was already used"),
    ] {
        let r = app.get(&format!("/verify-email?token={token}")).await;
        assert_eq!(r.status(), status, "{says}");
        assert!(r.text().await.unwrap().contains(says));
        let r = post_token(&stranger, token).await;
        assert_eq!(r.status(), status, "{says}, sent");
        assert!(r.text().await.unwrap().contains(says));
    }
    // Malformed: missing, cut, too long, NUL and control characters: 400 before any SQL.
    let cut = &valid[..42];
    for query in [
        String::new(),
        "?token=".into(),
        format!("?token={cut}"),
        format!("?token={valid}A"),
        format!("?token={cut}%00"),
        format!("?token={cut}%0A"),
        format!("?token={}", "A".repeat(5000)),
    ] {
        let r = app.get(&format!("/verify-email{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        assert!(r.text().await.unwrap().contains("This link is not valid"));
    }
    let r = post_token(&stranger, &format!("{cut}\0")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(balance(&app, &email).await, 0, "nothing verified");

    // The form needs its CSRF cookie and token.
    let r = app
        .client
        .post(app.url("/verify-email"))
        .form(&[("csrf_token", "x".to_owned()), ("token", valid.clone())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Signed in as the account: back to the keys with a flash.
    let r = follow(&app, &format!("/verify-email?token={valid}")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[header::LOCATION], "/keys");
    let keys = app.get_html("/keys").await;
    assert!(keys.contains("Your email address is verified, and 5.00 credits were added"));
    // Every other link of the account is spent with it; nothing is granted twice.
    let r = post_token(&stranger, &second).await;
    assert!(r.text().await.unwrap().contains("Email already verified"));
    assert_eq!(balance(&app, &email).await, 5_000_000);
    // Verified: Resend has nothing to do.
    let r = app.post_form("/verify-email/resend", "/keys", &[]).await;
    assert_eq!(r.status(), 303);
    assert!(app.get_html("/keys").await.contains("verified already"));
}

#[tokio::test]
async fn resend_is_limited_per_account() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_app_with(|s| verification_on(s, sink.url())).await;
    let email = app.signed_up().await;
    let id = account_id(&app, &email).await;
    let first = link_of(&sink.wait_for(1).await[0]);

    // The sign-up's mail went out moments ago: one a minute.
    let r = app.post_form("/verify-email/resend", "/keys", &[]).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("you can ask for another in"));

    // A minute later: a new link, by mail.
    let age = |ms: i64| {
        format!(
            "update email_verification_tokens set created_at = created_at - {ms} where account_id = {id}"
        )
    };
    app.execute_sql(&age(61_000)).await;
    let r = app.post_form("/verify-email/resend", "/keys", &[]).await;
    assert_eq!(r.status(), 303);
    assert!(app
        .get_html("/keys")
        .await
        .contains("We sent a new verification link"));
    let mails = sink.wait_for(2).await;
    let second = link_of(&mails[1]);
    assert_ne!(first, second, "a new token");
    assert_eq!(mails[1]["rcpt_tos"][0], email.as_str());

    // Ten a day, the sign-up's included: plant eight more, older than a minute.
    let now = lowrouter::domain::time_util::now_ms();
    for i in 0..8 {
        let t = VerifyToken::generate();
        app.execute_sql(&format!(
            "insert into email_verification_tokens (token_hash, account_id, created_at, expires_at) \
             values ('{}', {id}, {}, {})",
            t.hash().0,
            now - 3_600_000 - i,
            now + 60_000
        ))
        .await;
    }
    app.execute_sql(&age(61_000)).await;
    let r = app.post_form("/verify-email/resend", "/keys", &[]).await;
    assert_eq!(r.status(), 429);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("10 verification emails went out"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 2, "no mail beyond the limits");

    // Both mailed links work until one is used (signed in: back to the keys).
    let r = follow(&app, &first).await;
    assert_eq!(r.status(), 303);
    let r = app.get(&second).await;
    assert!(r.text().await.unwrap().contains("Email already verified"));
    app.create_key("verified", &[]).await;
}

#[tokio::test]
async fn verification_needs_mail_settings_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: fresh_database(dir.path()).await,
        require_email_verification: true,
        mail_from: Some("noreply@example.test".into()),
        ..Settings::default()
    };
    let e = lowrouter::startup::Application::build(settings)
        .await
        .err()
        .expect("refused to start");
    let e = format!("{e:#}");
    assert!(
        e.contains("smtp_url, public_base_url are not set"),
        "names what is missing: {e}"
    );
}

#[tokio::test]
async fn off_by_default() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    assert_eq!(balance(&app, &email).await, 5_000_000, "granted at sign-up");
    assert!(!app.get_html("/keys").await.contains("Verify your email"));
    let verified = app
        .scalar_i64(&format!(
            "select count(*) from accounts where email = '{email}' and email_verified_at is not null"
        ))
        .await;
    assert_eq!(verified, 1, "counted as verified");
    let r = app.post_form("/verify-email/resend", "/keys", &[]).await;
    assert_eq!(r.status(), 404);
    app.create_key("k", &[]).await;
}
