//! Alerts (issue 19): thresholds, spikes with auto-disable, webhook delivery through a real
//! local receiver (signatures, retries across a restart, no redirects), SSRF refusals, the
//! notifications list and the email digest. Both backends.

mod outbox;
mod receiver;

use std::time::{Duration, Instant};

use lowrouter::config::Settings;
use serde_json::Value;

use crate::helpers::{between, fresh_database, spawn_app_with, test_app_at, TestApp};
use receiver::{Hit, Receiver};

fn fast_alerts(s: &mut Settings) {
    s.webhook_allow_private_targets = true;
    s.webhook_retry_base = Duration::from_millis(300);
    s.alert_poll = Duration::from_millis(100);
}

/// Saves the workspace's spike settings (floor in credits, factor) through the form.
async fn save_spike_settings(app: &TestApp, floor: &str, factor: &str) {
    let r = app
        .post_form(
            "/alerts/settings",
            "/alerts/settings",
            &[
                ("spike_floor", floor.into()),
                ("spike_factor", factor.into()),
                ("balance_below", "".into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "settings saved");
}

/// Adds an endpoint for `events` through the settings form; its one-time secret.
async fn add_endpoint(app: &TestApp, url: &str, events: &[&str]) -> String {
    let mut fields = vec![("url", url.to_owned())];
    fields.extend(events.iter().map(|e| ("events", (*e).to_owned())));
    let r = app
        .post_form("/alerts/webhooks", "/alerts/settings", &fields)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    let secret = between(
        &html,
        "<code class=\"token wraps\" id=\"webhook-secret\">",
        "</code>",
    )
    .expect("the secret is revealed once")
    .to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(
        !app.get_html("/alerts/settings").await.contains(&secret),
        "shown once"
    );
    secret
}

/// The HMAC the README documents, checked independently in Rust.
fn verify_rust(secret: &str, header: &str, body: &str) -> bool {
    use hmac::{Hmac, Mac};
    let mut parts = header.split(',');
    let t = parts.next().and_then(|p| p.strip_prefix("t=")).unwrap();
    let v1 = parts.next().and_then(|p| p.strip_prefix("v1=")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap()).is_ok()
}

/// Runs README's Python verification snippet (between its markers) on a delivery.
fn verify_python(secret: &str, header: &str, body: &str) -> bool {
    let readme = include_str!("../../README.md");
    let snippet = between(readme, "<!-- webhook-verify:start -->\n```python\n", "```")
        .expect("README holds the snippet");
    let program = format!(
        "{snippet}\nimport os, sys\nprint(verify(os.environ['S'], os.environ['H'], sys.stdin.buffer.read()))\n"
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &program])
        .env("S", secret)
        .env("H", header)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

fn of_type(hits: &[Hit], kind: &str) -> Vec<Value> {
    hits.iter()
        .map(|h| serde_json::from_str::<Value>(&h.body).unwrap())
        .filter(|v| v["type"] == kind)
        .collect()
}

#[tokio::test]
async fn limit_thresholds_alert_once_each_signed_and_listed() {
    let app = spawn_app_with(fast_alerts).await;
    let receiver = Receiver::start(0).await;
    app.signed_up().await;
    let secret = add_endpoint(
        &app,
        &format!("{}/hook", receiver.url),
        &["limit.threshold"],
    )
    .await;
    // Each echo of 40 bytes costs 0.024 credits: 24%, 48%, 72% (50), 96% (80), then refused
    // at the limit (100), and refused again (nothing new).
    let token = app.create_key("capped", &[("daily_limit", "0.1")]).await;
    let text = "x".repeat(40);
    for expected in [200, 200, 200, 200, 429, 429] {
        assert_eq!(app.echo(&token, &text).await.status(), expected);
    }
    let hits = receiver
        .wait_for(Duration::from_secs(10), |h| {
            of_type(h, "limit.threshold").len() >= 3
        })
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.hits().len(), hits.len(), "nothing more arrives");
    let events = of_type(&hits, "limit.threshold");
    let mut percents: Vec<i64> = events
        .iter()
        .map(|e| e["details"]["percent"].as_i64().unwrap())
        .collect();
    percents.sort();
    assert_eq!(percents, [50, 80, 100]);
    for e in &events {
        assert_eq!(e["details"]["period"], "day");
        assert_eq!(e["key"]["name"], "capped");
        assert!(e["key"]["id"].as_str().unwrap().starts_with("key_"));
        assert!(e["key"]["display"].as_str().unwrap().starts_with("lr-sk-"));
        assert!(e["id"].as_str().unwrap().starts_with("evt_"));
        assert!(e["workspace"]["id"].is_number());
        assert!(!e.to_string().contains(&token), "no token in a payload");
    }
    // The notifications list and the nav's unread count; Mark all read clears it.
    let page = app.get_html("/alerts").await;
    assert!(page.contains("reached 80% of its day limit"), "{page}");
    // With its facts: the amounts, the key's secret as shown, and a link to the key.
    assert!(page.contains("of a day limit of"), "{page}");
    assert!(page.contains("Current secret of the key: lr-sk-"), "{page}");
    let id = app.key_id("capped").await;
    assert!(
        page.contains(&format!("href=\"/keys/{id}\">Open the key")),
        "{page}"
    );
    // Three thresholds and the first use of the echo model.
    assert!(page.contains("aria-label=\"4 unread\""), "{page}");
    let r = app.post_form("/alerts/read", "/alerts", &[]).await;
    assert_eq!(r.status(), 303);
    assert!(!app.get_html("/alerts").await.contains("unread\""));
    // The delivery log shows them delivered.
    let log = app.get_html("/alerts/settings").await;
    assert_eq!(
        log.matches("<td data-label=\"State\">delivered</td>")
            .count(),
        3,
        "{log}"
    );
    // Signatures verify with the README's snippet and independently (last: the page
    // checks above keep no connection idle while Python starts).
    for h in &hits {
        assert!(verify_rust(&secret, &h.signature, &h.body), "{h:?}");
        assert!(verify_python(&secret, &h.signature, &h.body), "{h:?}");
        assert!(!verify_python(
            &secret,
            &h.signature,
            &format!("{} ", h.body)
        ));
        assert!(!verify_python("whsec_wrong", &h.signature, &h.body));
    }
}

#[tokio::test]
async fn a_spike_disables_a_key_with_auto_disable_and_enable_restores_it() {
    let app = spawn_app_with(fast_alerts).await;
    let receiver = Receiver::start(0).await;
    app.signed_up().await;
    add_endpoint(&app, &receiver.url, &["spend.spike"]).await;
    save_spike_settings(&app, "0.01", "10").await;
    let token = app.create_key("hot", &[]).await;
    let calm = app.create_key("calm", &[]).await;
    let id = app.key_id("hot").await;
    let r = app
        .post_form(
            &format!("/alerts/keys/{id}/auto-disable"),
            "/alerts/settings",
            &[("on", "1".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    // 0.024 credits in the hour: above the floor, and the key has no history (median 0).
    assert_eq!(app.echo(&token, &"x".repeat(40)).await.status(), 200);
    let start = Instant::now();
    loop {
        let r = app.echo(&token, "again").await;
        if r.status() == 401 {
            let e: Value = r.json().await.unwrap();
            assert!(
                e["error"]["message"].as_str().unwrap().contains("disabled"),
                "{e}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the key was never disabled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hits = receiver
        .wait_for(Duration::from_secs(5), |h| !h.is_empty())
        .await;
    let spike = of_type(&hits, "spend.spike")
        .into_iter()
        .find(|e| e["key"]["name"] == "hot")
        .expect("the hot key's spike");
    assert_eq!(spike["details"]["auto_disabled"], true);
    assert_eq!(spike["key"]["name"], "hot");
    // The other key, without auto-disable, still works.
    assert_eq!(app.echo(&calm, "hi").await.status(), 200);
    // Enable restores it (the spike of this hour is already told: no second disable).
    let r = app
        .post_form(&format!("/keys/{id}/enable"), "/keys", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.echo(&token, "back").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.echo(&token, "still").await.status(), 200);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_on_the_third_try_after_a_restart() {
    let receiver = Receiver::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_database(dir.path()).await;
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: db_url.clone(),
        signup_max_per_hour: 1000,
        webhook_allow_private_targets: true,
        webhook_retry_base: Duration::from_secs(1),
        alert_poll: Duration::from_millis(50),
        ..Settings::default()
    };
    let first = lowrouter::startup::Application::build(settings.clone())
        .await
        .unwrap();
    let stop = first.stop_handle();
    let app = test_app_at(first.port(), db_url, dir);
    let running = tokio::spawn(first.run_until_stopped());
    app.signed_up().await;
    let secret = add_endpoint(&app, &receiver.url, &["spend.spike"]).await;
    let page = app.get_html("/alerts/settings").await;
    let endpoint = between(&page, "action=\"/alerts/webhooks/", "/test\"")
        .unwrap()
        .to_owned();
    let r = app
        .post_form(
            &format!("/alerts/webhooks/{endpoint}/test"),
            "/alerts/settings",
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    // Two failures (at once, then a second later); stop before the third (two seconds on).
    receiver
        .wait_for(Duration::from_secs(5), |h| h.len() >= 2)
        .await;
    stop.stop(true).await;
    running.await.unwrap().unwrap();
    assert_eq!(receiver.hits().len(), 2);

    let second = lowrouter::startup::Application::build(settings)
        .await
        .unwrap();
    let port = second.port();
    tokio::spawn(second.run_until_stopped());
    let hits = receiver
        .wait_for(Duration::from_secs(10), |h| h.len() >= 3)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits().len(), 3, "delivered once it succeeded");
    let ids: Vec<Value> = hits
        .iter()
        .map(|h| serde_json::from_str::<Value>(&h.body).unwrap()["id"].clone())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one event id to dedupe by: {ids:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&hits[2].body).unwrap()["type"],
        "test"
    );
    assert!(hits
        .iter()
        .all(|h| verify_rust(&secret, &h.signature, &h.body)));
    // The log on the restarted server (same database, same session).
    let mut app = app;
    app.port = port;
    app.address = format!("http://127.0.0.1:{port}");
    let log = app.get_html("/alerts/settings").await;
    assert!(
        log.contains("<td data-label=\"State\">delivered</td>"),
        "{log}"
    );
    assert!(log.contains("<td data-label=\"Attempts\">3</td>"), "{log}");
}

#[tokio::test]
async fn private_targets_are_refused_at_save_and_at_delivery() {
    let app = spawn_app_with(|s| {
        s.alert_poll = Duration::from_millis(100);
    })
    .await;
    let receiver = Receiver::start(0).await;
    app.signed_up().await;
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::1]:{port}/"),
        "http://10.0.0.7/hook".to_owned(),
        "http://2130706433/".to_owned(),
        format!("http://localhost:{port}/"),
        "file:///etc/passwd".to_owned(),
        "http://exa\0mple.com/".to_owned(),
        format!("https://{}.example.com/", "a".repeat(3000)),
    ] {
        let r = app
            .post_form(
                "/alerts/webhooks",
                "/alerts/settings",
                &[("url", url.clone()), ("events", "test".into())],
            )
            .await;
        assert_eq!(r.status(), 422, "{url}");
        let html = r.text().await.unwrap();
        assert!(html.contains("field-error"), "{url}: {html}");
    }
    assert!(app
        .get_html("/alerts/settings")
        .await
        .contains("No endpoints yet."));
    // A name that resolves to loopback, planted past the form (as if DNS changed after
    // the save): refused at delivery, after resolution, and never reached.
    let account = app.scalar_i64("select id from accounts").await;
    app.execute_sql(&format!(
        "insert into webhook_endpoints (account_id, url, secret, events, created_at) \
         values ({account}, 'http://localhost:{port}/', 'whsec_x', 'test', 0)"
    ))
    .await;
    let page = app.get_html("/alerts/settings").await;
    let endpoint = between(&page, "action=\"/alerts/webhooks/", "/test\"")
        .unwrap()
        .to_owned();
    let r = app
        .post_form(
            &format!("/alerts/webhooks/{endpoint}/test"),
            "/alerts/settings",
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let start = Instant::now();
    loop {
        let log = app.get_html("/alerts/settings").await;
        if log.contains("refused: the host resolves to a non-public address") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.hits().is_empty());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = spawn_app_with(fast_alerts).await;
    let receiver = Receiver::start(0).await;
    app.signed_up().await;
    add_endpoint(&app, &format!("{}/redirect", receiver.url), &["test"]).await;
    let page = app.get_html("/alerts/settings").await;
    let endpoint = between(&page, "action=\"/alerts/webhooks/", "/test\"")
        .unwrap()
        .to_owned();
    app.post_form(
        &format!("/alerts/webhooks/{endpoint}/test"),
        "/alerts/settings",
        &[],
    )
    .await;
    receiver
        .wait_for(Duration::from_secs(5), |h| !h.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = receiver.hits();
    assert!(hits.iter().all(|h| h.path == "/redirect"), "{hits:?}");
    let log = app.get_html("/alerts/settings").await;
    assert!(
        log.contains("<td data-label=\"Response\">302</td>"),
        "{log}"
    );
    assert!(
        log.contains("<td data-label=\"State\">pending</td>"),
        "a 302 is not a delivery"
    );
}

#[tokio::test]
async fn other_workspaces_endpoints_and_keys_are_not_found() {
    let app = spawn_app_with(fast_alerts).await;
    let receiver = Receiver::start(0).await;
    app.signed_up().await;
    add_endpoint(&app, &receiver.url, &["test"]).await;
    app.create_key("mine", &[]).await;
    let key = app.key_id("mine").await;
    let page = app.get_html("/alerts/settings").await;
    let endpoint = between(&page, "action=\"/alerts/webhooks/", "/test\"")
        .unwrap()
        .to_owned();

    let other = crate::helpers::spawn_clone(&app);
    other.signed_up().await;
    for path in [
        format!("/alerts/webhooks/{endpoint}/test"),
        format!("/alerts/webhooks/{endpoint}/delete"),
        format!("/alerts/keys/{key}/auto-disable"),
        "/alerts/webhooks/99999999999999999999/delete".to_owned(),
    ] {
        let r = other
            .post_form(&path, "/alerts/settings", &[("on", "1".into())])
            .await;
        assert_eq!(r.status(), 404, "{path}");
    }
    // Bad settings keep the input and save nothing.
    let r = other
        .post_form(
            "/alerts/settings",
            "/alerts/settings",
            &[
                ("spike_floor", "lots\0".into()),
                ("spike_factor", "0".into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Nothing was saved"));
    assert!(receiver.hits().is_empty());
    assert!(app
        .get_html("/alerts/settings")
        .await
        .contains(&receiver.url));
}

#[tokio::test]
async fn uses_of_a_dead_secret_are_told_once_an_hour() {
    let app = spawn_app_with(fast_alerts).await;
    let receiver = Receiver::start(0).await;
    app.signed_up().await;
    add_endpoint(&app, &receiver.url, &["secret.dead_use"]).await;
    let token = app.create_key("old", &[]).await;
    let id = app.key_id("old").await;
    assert_eq!(
        app.post_form(&format!("/keys/{id}/disable"), "/keys", &[])
            .await
            .status(),
        303
    );
    for _ in 0..3 {
        assert_eq!(app.echo(&token, "hi").await.status(), 401);
    }
    let hits = receiver
        .wait_for(Duration::from_secs(5), |h| !h.is_empty())
        .await;
    let e: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(e["type"], "secret.dead_use");
    assert_eq!(e["details"]["reason"], "disabled");
    assert!(e["details"]["count"].as_i64().unwrap() >= 1);
    assert_eq!(app.echo(&token, "hi").await.status(), 401);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.hits().len(), 1, "one alert per secret per hour");
}

#[tokio::test]
async fn the_email_digest_comes_at_most_once_an_hour() {
    let Some(sink) = crate::smtp_sink::SmtpSink::start() else {
        return;
    };
    let app = spawn_app_with(|s| {
        fast_alerts(s);
        s.smtp_url = Some(lowrouter::config::Secret::new(sink.url()));
        s.mail_from = Some("LowRouter <noreply@example.test>".into());
    })
    .await;
    let email = app.signed_up().await;
    let r = app
        .post_form(
            "/alerts/settings",
            "/alerts/settings",
            &[
                ("spike_floor", "1".into()),
                ("spike_factor", "10".into()),
                ("email_digest", "1".into()),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let token = app.create_key("capped", &[("daily_limit", "0.04")]).await;
    // 0.024 of 0.04: 60% (50), then refused at the limit (100): two events, one digest.
    assert_eq!(app.echo(&token, &"x".repeat(40)).await.status(), 200);
    let start = Instant::now();
    while !app.get_html("/alerts").await.contains("reached 50%") {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0]["to"].as_str().unwrap(), email);
    assert!(
        mails[0]["text"]
            .as_str()
            .unwrap()
            .contains("reached 50% of its day limit"),
        "{}",
        mails[0]
    );
    assert_eq!(app.echo(&token, &"x".repeat(40)).await.status(), 429);
    let start = Instant::now();
    while !app.get_html("/alerts").await.contains("reached 100%") {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        sink.messages().len(),
        1,
        "the next digest waits for the hour"
    );
}

/// Alert settings, webhook endpoints and per-key auto-disable are settings changes: each is
/// in the audit log with its actor, and an endpoint's URL appears by host only (a webhook
/// URL's path is often a secret itself).
#[tokio::test]
async fn settings_changes_are_audited_without_the_webhook_path() {
    let app = spawn_app_with(fast_alerts).await;
    app.signed_up().await;
    add_endpoint(
        &app,
        "http://127.0.0.1:9/hooks/T000/B000/s3cr3t-path",
        &["spend.spike"],
    )
    .await;
    save_spike_settings(&app, "0.5", "12").await;
    app.create_key("hot", &[]).await;
    let id = app.key_id("hot").await;
    let r = app
        .post_form(
            &format!("/alerts/keys/{id}/auto-disable"),
            "/alerts/settings",
            &[("on", "1".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let endpoint = app
        .scalar_i64("select min(id) from webhook_endpoints")
        .await;
    let r = app
        .post_form(
            &format!("/alerts/webhooks/{endpoint}/delete"),
            "/alerts/settings",
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let audit = app.get_html("/audit?action=settings.changed").await;
    assert_eq!(
        audit.matches("<code>settings.changed</code>").count(),
        4,
        "{audit}"
    );
    assert!(audit.contains("127.0.0.1") && audit.contains("spike_factor"));
    assert!(!audit.contains("s3cr3t-path") && !audit.contains("whsec_"));
    assert_eq!(
        app.scalar_i64(
            "select count(*) from audit_events where action = 'settings.changed' and details like '%s3cr3t%'"
        )
        .await,
        0
    );
}

/// The spike check's baseline is the key's median hour over the 14 days before the last
/// hour (`usage_hourly_keys`): the same spend is a spike for a key that usually spends
/// little, and business as usual for one that usually spends more.
#[tokio::test]
async fn a_spike_is_measured_against_the_keys_own_median_hour() {
    let app = spawn_app_with(fast_alerts).await;
    app.signed_up().await;
    save_spike_settings(&app, "0.01", "10").await;
    let quiet = app.create_key("quiet", &[]).await;
    let steady = app.create_key("steady", &[]).await;
    let this_hour = lowrouter::domain::time_util::now_ms() / 3_600_000;
    // 14 days of history ending two hours ago: 0.0001 credits an hour for `quiet`, 1 credit
    // an hour for `steady`.
    for (name, per_hour) in [("quiet", 100i64), ("steady", 1_000_000)] {
        let id = app.key_id(name).await;
        let account = app
            .scalar_i64(&format!("select account_id from api_keys where id = {id}"))
            .await;
        let values: Vec<String> = (this_hour - 1 - 14 * 24..this_hour - 1)
            .map(|h| format!("({account}, {id}, {h}, {per_hour})"))
            .collect();
        app.execute_sql(&format!(
            "insert into usage_hourly_keys (account_id, key_id, hour, cost) values {}",
            values.join(", ")
        ))
        .await;
        let r = app
            .post_form(
                &format!("/alerts/keys/{id}/auto-disable"),
                "/alerts/settings",
                &[("on", "1".into())],
            )
            .await;
        assert_eq!(r.status(), 303);
    }
    // 0.024 credits each: above the floor; over 10 x 0.0001, far under 10 x 1.
    assert_eq!(app.echo(&steady, &"x".repeat(40)).await.status(), 200);
    assert_eq!(app.echo(&quiet, &"x".repeat(40)).await.status(), 200);
    let start = Instant::now();
    while app.echo(&quiet, "again").await.status() != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the quiet key's spike was never seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Several evaluator rounds later, the steady key still works.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.echo(&steady, "fine").await.status(), 200);
    assert_eq!(
        app.scalar_i64("select count(*) from alert_events where kind = 'spend.spike'")
            .await,
        1
    );
}
