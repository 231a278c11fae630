//! Key lifecycle (issue 15): Roll, retirement of the previous secret (now, when quiet),
//! at most two live secrets, one key's spend and history, and leaked-token reports.

use std::time::Duration;

use base64::Engine as _;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{spawn_app, spawn_app_with, token_of, TestApp};
use lowrouter::config::LeakReportKey;
use lowrouter::domain::ApiToken;

/// Rolls key `id` through its Roll form; the new token from the reveal.
async fn roll(app: &TestApp, id: i64, fields: &[(&str, &str)]) -> String {
    let fields: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let path = format!("/keys/{id}/roll");
    let r = app.post_form(&path, &path, &fields).await;
    assert_eq!(r.status(), 200, "rolled");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(
        html.contains("New secret for"),
        "the reveal says it is a roll"
    );
    token_of(&html).expect("reveal shows the new token")
}

/// The status and error message of an echo request.
async fn try_echo(app: &TestApp, token: &str) -> (u16, String) {
    let r = app.echo(token, "hi").await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (
        status,
        v["error"]["message"].as_str().unwrap_or("").to_owned(),
    )
}

async fn works(app: &TestApp, token: &str) -> bool {
    try_echo(app, token).await.0 == 200
}

fn last4(token: &str) -> &str {
    &token[token.len() - 4..]
}

#[tokio::test]
async fn roll_keeps_the_key_and_the_old_secret_works_until_retired_now() {
    let app = spawn_app().await;
    app.signed_up().await;
    let old = app.create_key("svc", &[("daily_limit", "5.00")]).await;
    let id = app.key_id("svc").await;
    assert!(works(&app, &old).await);

    let new = roll(&app, id, &[]).await;
    assert_ne!(old, new);
    assert!(works(&app, &old).await, "the previous secret still works");
    assert!(works(&app, &new).await, "the new secret works");

    // One key: same id, name, limits; the spend of both secrets is the key's.
    let via_old = app.api_json(&old, "/api/v1/key").await;
    let via_new = app.api_json(&new, "/api/v1/key").await;
    assert_eq!(via_old, via_new, "both secrets see the same key");
    assert_eq!(app.key_id("svc").await, id);
    let rows = app
        .scalar_i64(&format!(
            "select count(distinct secret_last4) from usage where key_id = {id}"
        ))
        .await;
    assert_eq!(rows, 2, "usage rows record which secret served them");

    // The key page shows both secrets and when the previous one retires.
    let page = app.get_html(&format!("/keys/{id}")).await;
    assert!(page.contains(&format!("…{}", last4(&old))), "{page}");
    assert!(page.contains(&format!("…{}", last4(&new))));
    assert!(page.contains("Previous") && page.contains("Retires once it has served no request"));

    // The previous secret served a request a moment ago: Retire now asks first.
    let ask = app
        .post_form(&format!("/keys/{id}/retire"), &format!("/keys/{id}"), &[])
        .await;
    assert_eq!(ask.status(), 200);
    assert!(ask
        .text()
        .await
        .unwrap()
        .contains("Retire the previous secret of “svc”?"));
    assert!(
        works(&app, &old).await,
        "not retired before it is confirmed"
    );
    let r = app
        .post_form(
            &format!("/keys/{id}/retire"),
            &format!("/keys/{id}"),
            &[("confirm", "1".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (status, message) = try_echo(&app, &old).await;
    assert_eq!(status, 401);
    assert!(message.contains("rotated"), "{message}");
    // It names the secret sent and the one to use instead, by their last characters, and
    // says what to do when that one is lost; never a whole secret.
    assert!(
        message.contains(&format!("ending in {}", last4(&old))),
        "{message}"
    );
    assert!(
        message.contains(&format!("current secret, ending in {}", last4(&new))),
        "{message}"
    );
    assert!(message.contains("Roll the key again"), "{message}");
    assert!(!message.contains(&new[6..]) && !message.contains(&old[6..]));
    assert!(works(&app, &new).await);

    // Last use: when and with which model, on the list and the key page.
    let list = app.get_html("/keys").await;
    assert!(list.contains("Model <code>lowrouter/echo</code>"), "{list}");
    assert!(list.contains("just now"));
    // The list stays light: the secret's age and the client are on the key's page.
    let key_page = app.get_html(&format!("/keys/{id}")).await;
    assert!(
        key_page.contains("The current secret is 0 days old"),
        "{key_page}"
    );
    // reqwest sends no User-Agent: the network alone.
    assert!(page_has_client(&app, id).await);
    assert!(!list.contains(">Rotate<") && !list.contains(">Unused<"));

    // The usage detail page and the CSV show the serving secret.
    let csv = app.get_html("/usage.csv").await;
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .ends_with("secret_last4,secret,key_id"));
    assert!(csv.contains(last4(&old)) && csv.contains(last4(&new)));
    // Each row names its secret as prefix...last four (ASCII), the retired one included.
    for token in [&old, &new] {
        let shown = format!("{}...{}", &token[..10], last4(token));
        assert!(
            csv.contains(&format!(",{},{shown},key_", last4(token))),
            "{shown} in {csv}"
        );
    }
    // The detail page names the secret as the Keys pages do (prefix…last four), the retired
    // one included; never more of it.
    let gens: Vec<String> = {
        let usage = app.get_html("/usage").await;
        usage
            .match_indices("href=\"/usage/gen-")
            .map(|(i, _)| usage[i + 13..].split('"').next().unwrap().to_owned())
            .collect()
    };
    let mut shown = Vec::new();
    for g in &gens {
        let page = app.get_html(&format!("/usage/{g}")).await;
        for token in [&old, &new] {
            let masked = format!("{}…{}", &token[..10], last4(token));
            if page.contains(&masked) {
                shown.push(masked);
            }
            assert!(
                !page.contains(&token[10..token.len() - 4]),
                "never more of it"
            );
        }
    }
    assert!(shown.iter().any(|m| m.ends_with(last4(&old))), "{shown:?}");
    assert!(shown.iter().any(|m| m.ends_with(last4(&new))), "{shown:?}");
}

#[tokio::test]
async fn old_and_unused_keys_are_marked() {
    let app = spawn_app_with(|s| {
        s.rotate_after_days = 0;
        s.unused_after_days = 0;
    })
    .await;
    app.signed_up().await;
    app.create_key("stale", &[]).await;
    let list = app.get_html("/keys").await;
    assert!(
        list.contains(">Rotate<") && list.contains(">Unused<"),
        "{list}"
    );
    assert!(list.contains("Never"));
}

#[tokio::test]
async fn a_quiet_previous_secret_retires_once_its_traffic_stops() {
    let app = spawn_app().await;
    app.signed_up().await;
    let old = app.create_key("quiet", &[]).await;
    let id = app.key_id("quiet").await;
    // Retires once it has served no request for 60 minutes. Time passes by moving the
    // secret's own clock back (its roll and last use), not by sleeping.
    let new = roll(
        &app,
        id,
        &[
            ("retire", "when_quiet"),
            ("quiet_minutes", "60"),
            ("deadline_days", "1"),
        ],
    )
    .await;
    let age_old_secret = |minutes: i64| {
        format!(
            "update key_secrets set rolled_at = rolled_at - {ms}, last_used_at = last_used_at - {ms} \
             where key_id = {id} and token_last4 = '{}'",
            last4(&old),
            ms = minutes * 60_000
        )
    };
    assert!(works(&app, &old).await);
    app.get_html("/keys").await; // every answered request's last use is written
    app.execute_sql(&age_old_secret(59)).await;
    // PostgreSQL writes a secret's last use at most once a second per process
    // (`usage_batch::last_use`): the one real wait, so the next request's use is written.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // 59 minutes after the roll and its last request: still within its quiet period.
    assert!(
        works(&app, &old).await,
        "quiet for less than its period: works"
    );
    app.get_html("/keys").await;
    app.execute_sql(&age_old_secret(2)).await;
    // 61 minutes after the roll, 2 after its last request: traffic keeps it alive.
    assert!(works(&app, &old).await, "still in use: not retired");
    app.get_html("/keys").await;
    app.execute_sql(&age_old_secret(61)).await;
    let (status, message) = try_echo(&app, &old).await;
    assert_eq!(status, 401, "quiet for longer than its period: retired");
    assert!(message.contains("rotated"), "{message}");
    assert!(works(&app, &new).await);
    // Retired for good, and gone from the key page.
    let page = app.get_html(&format!("/keys/{id}")).await;
    assert!(!page.contains(&format!("…{}", last4(&old))));
}

#[tokio::test]
async fn rolling_again_keeps_at_most_two_live_secrets() {
    let app = spawn_app().await;
    app.signed_up().await;
    let t0 = app.create_key("twice", &[]).await;
    let id = app.key_id("twice").await;
    let t1 = roll(&app, id, &[]).await;
    assert!(
        works(&app, &t1).await,
        "the new secret is deployed and used"
    );
    let t2 = roll(&app, id, &[]).await;
    let (status, message) = try_echo(&app, &t0).await;
    assert_eq!(status, 401, "the pending previous secret retired");
    assert!(message.contains("rotated"));
    assert!(works(&app, &t1).await && works(&app, &t2).await);
    let live = app
        .scalar_i64(&format!(
            "select count(*) from key_secrets where key_id = {id} and retired_at is null"
        ))
        .await;
    assert_eq!(live, 2);
}

#[tokio::test]
async fn a_repeated_roll_never_retires_the_secret_in_use() {
    let app = spawn_app().await;
    app.signed_up().await;
    let deployed = app.create_key("retry", &[]).await;
    let id = app.key_id("retry").await;
    assert!(works(&app, &deployed).await);
    // The first roll's reveal was lost; the owner rolls again.
    let lost = roll(&app, id, &[]).await;
    let shown = roll(&app, id, &[]).await;
    assert!(
        works(&app, &deployed).await,
        "the deployed secret still works"
    );
    assert!(works(&app, &shown).await);
    assert_eq!(
        try_echo(&app, &lost).await.0,
        401,
        "the unused one was replaced"
    );
}

#[tokio::test]
async fn roll_form_refuses_bad_choices_and_other_accounts() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("form", &[]).await;
    let id = app.key_id("form").await;
    let path = format!("/keys/{id}/roll");
    for fields in [
        vec![
            ("retire", "when_quiet".to_owned()),
            ("quiet_minutes", "-1".to_owned()),
        ],
        vec![
            ("retire", "at".to_owned()),
            ("at", "2001-01-01T00:00".to_owned()),
        ],
        vec![("retire", "never\u{0}".to_owned())],
    ] {
        let r = app.post_form(&path, &path, &fields).await;
        assert_eq!(r.status(), 422, "{fields:?}");
    }
    assert!(works(&app, &token).await, "nothing changed");
    let other = crate::helpers::spawn_clone(&app);
    other.signed_up().await;
    assert_eq!(other.get(&format!("/keys/{id}")).await.status(), 404);
    assert_eq!(other.post_form(&path, "/keys", &[]).await.status(), 404);
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

async fn report(app: &TestApp, body: Vec<u8>, headers: &[(&str, String)]) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/leaked-tokens"))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

fn leak_body(tokens: &[&str]) -> Vec<u8> {
    let entries: Vec<Value> = tokens
        .iter()
        .map(|t| {
            json!({"token": t, "type": "lowrouter_api_key",
            "url": "https://github.com/acme/app/blob/main/.env", "source": "content"})
        })
        .collect();
    serde_json::to_vec(&entries).unwrap()
}

#[tokio::test]
async fn an_unsigned_report_quarantines_a_live_secret_only() {
    let app = spawn_app().await;
    app.signed_up().await;
    let leaked = app.create_key("leaky", &[]).await;
    let id = app.key_id("leaky").await;
    let unknown = ApiToken::generate().expose().to_owned();
    let mut typo = leaked.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let tokens = [
        leaked.as_str(),
        unknown.as_str(),
        typo.as_str(),
        "lr-sk-nope",
        "\u{0}",
    ];
    let r = report(&app, leak_body(&tokens), &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let labels: Vec<&str> = (0..5).map(|i| v[i]["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "true_positive",
            "false_positive",
            "false_positive",
            "false_positive",
            "false_positive"
        ]
    );
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(v[i]["token_hash"], sha256_hex(t));
        assert_eq!(v[i]["token_type"], "lowrouter_api_key");
    }

    let (status, message) = try_echo(&app, &leaked).await;
    assert_eq!(status, 401);
    assert!(
        message.contains("reported as leaked")
            && message.contains("https://github.com/acme/app/blob/main/.env"),
        "{message}"
    );
    // The banner on every page, with a one-click Roll; the rolled-in secret works.
    for page in ["/", "/keys", "/usage"] {
        let html = app.get_html(page).await;
        assert!(html.contains("Leaked secret blocked"), "{page}");
    }
    let new = roll(&app, id, &[("retire", "when_quiet")]).await;
    assert!(works(&app, &new).await, "quarantine is of that secret only");
    assert_eq!(try_echo(&app, &leaked).await.0, 401);
    assert!(!app
        .get_html("/keys")
        .await
        .contains("Leaked secret blocked"));
    // A report of a retired secret is a false positive.
    let v: Value = report(&app, leak_body(&[&leaked]), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v[0]["label"], "false_positive");
}

#[tokio::test]
async fn hostile_reports_are_refused_cleanly() {
    let app = spawn_app().await;
    app.signed_up().await;
    let live = app.create_key("target", &[]).await;
    // A raw NUL is not JSON; an escaped one in `type` is refused; neither touches the key.
    let mut raw = leak_body(&[&live]);
    raw.insert(3, 0);
    assert_eq!(report(&app, raw, &[]).await.status(), 400);
    let nul = serde_json::to_vec(&json!([{"token": live, "type": "x\u{0}"}])).unwrap();
    assert_eq!(report(&app, nul, &[]).await.status(), 400);
    let not_array = b"{\"token\": 1}".to_vec();
    assert_eq!(report(&app, not_array, &[]).await.status(), 400);
    let many: Vec<&str> = vec!["lr-sk-x"; 1001];
    assert_eq!(report(&app, leak_body(&many), &[]).await.status(), 400);
    let huge = vec![b' '; 3 * 1024 * 1024];
    assert_eq!(report(&app, huge, &[]).await.status(), 413);
    assert!(works(&app, &live).await, "nothing was quarantined");
    // A URL that is not http(s), or holds control characters, is not kept.
    let body = serde_json::to_vec(&json!([{"token": live, "type": "t",
        "url": "javascript:alert(1)\u{0}"}]))
    .unwrap();
    assert_eq!(report(&app, body, &[]).await.status(), 200);
    let (status, message) = try_echo(&app, &live).await;
    assert_eq!(status, 401);
    assert!(!message.contains("javascript"), "{message}");
    let r = app.get("/api/v1/leaked-tokens").await;
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn signed_reports_are_required_when_keys_are_configured() {
    let signing = SigningKey::from_slice(&Sha256::digest(b"lowrouter leak test key")).unwrap();
    let pem = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let app = spawn_app_with(|s| {
        s.leak_report_public_keys = vec![LeakReportKey {
            key_identifier: "kid-1".into(),
            key: pem.clone(),
        }]
    })
    .await;
    app.signed_up().await;
    let live = app.create_key("signed", &[]).await;
    let body = leak_body(&[&live]);
    let sign = |b: &[u8]| {
        let sig: Signature = signing.sign(b);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    };
    let id = ("github-public-key-identifier", "kid-1".to_owned());

    assert_eq!(
        report(&app, body.clone(), &[]).await.status(),
        401,
        "unsigned"
    );
    let other = sign(b"another body");
    let bad = [id.clone(), ("github-public-key-signature", other)];
    assert_eq!(
        report(&app, body.clone(), &bad).await.status(),
        401,
        "bad signature"
    );
    let unknown = [
        ("github-public-key-identifier", "kid-2".to_owned()),
        ("github-public-key-signature", sign(&body)),
    ];
    assert_eq!(report(&app, body.clone(), &unknown).await.status(), 401);
    let garbage = [
        id.clone(),
        ("github-public-key-signature", "%%%".to_owned()),
    ];
    assert_eq!(report(&app, body.clone(), &garbage).await.status(), 401);
    assert!(works(&app, &live).await, "refused reports change nothing");

    let good = [id, ("github-public-key-signature", sign(&body))];
    let r = report(&app, body, &good).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["label"], "true_positive");
    assert_eq!(try_echo(&app, &live).await.0, 401);
}

#[tokio::test]
async fn usage_follows_the_key_not_its_current_name() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("before", &[]).await;
    let id = app.key_id("before").await;
    assert!(works(&app, &token).await);
    let fields = crate::helpers::key_fields("after", &[]);
    let r = app
        .post_form(
            &format!("/keys/{id}/edit"),
            &format!("/keys/{id}/edit"),
            &fields,
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(works(&app, &token).await);
    let keys = app.get_html("/keys").await;
    assert!(
        keys.contains(&format!("href=\"/usage?key_id={id}\"")),
        "{keys}"
    );
    let html = app.get_html(&format!("/usage?key_id={id}")).await;
    assert!(html.contains("the key now called “after”"), "{html}");
    assert!(
        html.contains(">before<") && html.contains(">after<"),
        "{html}"
    );
    let csv = app.get_html(&format!("/usage.csv?key_id={id}")).await;
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // Another account's key id shows nothing of it.
    let other = crate::helpers::spawn_clone(&app);
    other.signed_up().await;
    let html = other.get_html(&format!("/usage?key_id={id}")).await;
    assert!(
        !html.contains(">before<") && !html.contains(">after<"),
        "{html}"
    );
    let bad = app.get_html("/usage?key_id=x%00").await;
    assert!(bad.contains("The key id is not valid"));
}

/// The key page shows each secret's coarsened last client.
async fn page_has_client(app: &TestApp, id: i64) -> bool {
    let page = app.get_html(&format!("/keys/{id}")).await;
    page.contains("from 127.0.0.0/24")
}

/// Extend is audited and capped: a week in all, then the roll has to be finished.
#[tokio::test]
async fn extends_are_audited_and_capped_per_secret() {
    let app = spawn_app().await;
    app.signed_up().await;
    let old = app.create_key("svc", &[]).await;
    let id = app.key_id("svc").await;
    roll(&app, id, &[]).await;
    let retires = || async {
        app.scalar_i64(&format!(
            "select retires_at from key_secrets where key_id = {id} and rolled_at is not null"
        ))
        .await
    };
    let before = retires().await;
    // One Extend per rendered form: the same form sent again (a double click) does nothing.
    let body = app.form_body(&format!("/keys/{id}"), &[]).await;
    for _ in 0..2 {
        let r = app.post_body(&format!("/keys/{id}/extend"), &body).await;
        assert_eq!(r.status(), 303);
    }
    assert_eq!(
        retires().await,
        before + 86_400_000,
        "extended once, not twice"
    );
    assert!(app
        .get_html(&format!("/keys/{id}"))
        .await
        .contains("Already done"));
    let before = retires().await;
    let extend = |_| async {
        let r = app
            .post_form(&format!("/keys/{id}/extend"), &format!("/keys/{id}"), &[])
            .await;
        assert_eq!(r.status(), 303);
        app.get_html(&format!("/keys/{id}")).await
    };
    for i in 0..6 {
        let page = extend(i).await;
        assert!(page.contains("deadline is 24 hours later"), "extend {i}");
    }
    let capped = retires().await;
    assert!(capped >= before + 6 * 86_400_000, "seven days later in all");
    let page = extend(7).await;
    assert!(page.contains("extended 7 times already"), "{page}");
    assert_eq!(retires().await, capped, "the eighth changed nothing");
    assert!(works(&app, &old).await, "the previous secret still works");

    let audit = app.get_html("/audit?action=key.secret_extended").await;
    let rows = audit.matches("<code>key.secret_extended</code>").count();
    assert_eq!(rows, 7, "{audit}");
    assert!(
        audit.contains(&format!("…{}", last4(&old))),
        "names the secret"
    );
}
