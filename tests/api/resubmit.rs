//! Every form that makes something is safe to submit twice (issue 26): a reload of its
//! answer re-sends the POST, and the repeat must do nothing again, say "Already done" with
//! what the first one did, and leave what the person just copied working.

use reqwest::Method;

use crate::common::{between, token_of};
use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::management::{call, management_key};

/// Sends `body` to `path` twice, as a reload of the first answer would: the first answer
/// (200, a one-time reveal) and the page the repeat was sent to, which must say
/// "Already done" and be `location`.
async fn twice(
    app: &TestApp,
    path: &str,
    body: &[(String, String)],
    location: &str,
) -> (String, String) {
    let first = app.post_body(path, body).await;
    assert_eq!(first.status(), 200, "{path}: the first submission acts");
    assert_eq!(first.headers()["cache-control"], "no-store");
    let first = first.text().await.unwrap();
    let again = app.post_body(path, body).await;
    assert_eq!(again.status(), 303, "{path}: the repeat acts no more");
    assert_eq!(again.headers()["location"], location, "{path}");
    let page = app.get_html(location).await;
    assert!(
        page.contains("<div class=\"notice info\" role=\"status\">Already done: "),
        "{path}: the repeat says it was already done: {page}"
    );
    (first, page)
}

fn last4(token: &str) -> &str {
    &token[token.len() - 4..]
}

#[tokio::test]
async fn a_reloaded_roll_rolls_nothing_and_the_copied_secret_keeps_working() {
    let app = spawn_app().await;
    app.signed_up().await;
    let old = app.create_key("svc", &[]).await;
    let id = app.key_id("svc").await;
    let path = format!("/keys/{id}/roll");
    let body = app.form_body(&path, &[]).await;
    let (first, page) = twice(&app, &path, &body, &format!("/keys/{id}")).await;
    let new = token_of(&first).expect("the roll reveals the new secret");
    assert!(
        page.contains(&format!("…{}", last4(&new))) && page.contains("Roll again"),
        "the repeat names the new secret by its last characters: {page}"
    );
    assert!(!page.contains(&new[6..]), "never the secret itself");
    assert_eq!(
        app.echo(&new, "hi").await.status(),
        200,
        "the copied secret works"
    );
    assert_eq!(
        app.echo(&old, "hi").await.status(),
        200,
        "the old one too, until it retires"
    );
    let secrets = app
        .scalar_i64(&format!(
            "select count(*) from key_secrets where key_id = {id}"
        ))
        .await;
    assert_eq!(secrets, 2, "one roll, not two");
    // A new Roll form is a new roll.
    let body = app.form_body(&path, &[("retire", "now".into())]).await;
    let r = app.post_body(&path, &body).await;
    assert_eq!(r.status(), 200);
    let newer = token_of(&r.text().await.unwrap()).unwrap();
    assert_ne!(newer, new);
}

#[tokio::test]
async fn a_reloaded_invitation_keeps_the_link_that_was_copied() {
    let app = spawn_app().await;
    app.signed_up().await;
    let fields = [
        ("email", "new.person@example.com".to_owned()),
        ("role", "developer".to_owned()),
    ];
    let body = app.form_body("/members", &fields).await;
    let (first, page) = twice(&app, "/members/invite", &body, "/members").await;
    assert!(
        page.contains("new.person@example.com was invited as Developer"),
        "{page}"
    );
    let link = between(&first, "value=\"http", "\"").expect("the link is shown");
    let path = &link[link.find("/invitations/").unwrap()..];
    let live = app
        .scalar_i64("select count(*) from invitations where revoked_at is null")
        .await;
    assert_eq!(
        live, 1,
        "the repeat made no second invitation and revoked none"
    );
    let r = app.get(path).await;
    assert_eq!(r.status(), 200, "the copied link still opens");
}

#[tokio::test]
async fn reloaded_management_key_forms_create_and_roll_once() {
    let app = spawn_app().await;
    app.signed_up().await;
    let body = app
        .form_body("/management-keys", &[("name", "terraform".to_owned())])
        .await;
    let (first, page) = twice(&app, "/management-keys", &body, "/management-keys").await;
    assert!(page.contains("“terraform” was created"), "{page}");
    let mk = between(&first, "value=\"lr-mk-", "\"")
        .map(|t| format!("lr-mk-{t}"))
        .unwrap();
    assert_eq!(
        app.scalar_i64("select count(*) from management_keys").await,
        1
    );

    let other = management_key(&app, "ci", false).await;
    let list = app.get_html("/management-keys").await;
    let public_id = between(&list, "action=\"/management-keys/", "/roll\"")
        .unwrap()
        .to_owned();
    let path = format!("/management-keys/{public_id}/roll");
    let body = app.form_body("/management-keys", &[]).await;
    let (first, _) = twice(&app, &path, &body, "/management-keys").await;
    let rolled = between(&first, "value=\"lr-mk-", "\"")
        .map(|t| format!("lr-mk-{t}"))
        .unwrap();
    assert_eq!(
        call(&app, Method::GET, "/api/v1/keys", &rolled, None)
            .await
            .0,
        200,
        "the token copied from the first answer works"
    );
    let alive = [&mk, &other]
        .into_iter()
        .filter(|t| t.as_str() != rolled)
        .count();
    assert!(alive >= 1);
}

#[tokio::test]
async fn a_reloaded_webhook_form_adds_one_endpoint() {
    let app = spawn_app_with(|s| s.webhook_allow_private_targets = true).await;
    app.signed_up().await;
    let fields = [
        ("url", "http://127.0.0.1:9/hook".to_owned()),
        ("events", "limit.threshold".to_owned()),
    ];
    let body = app.form_body("/alerts/settings", &fields).await;
    let (first, page) = twice(&app, "/alerts/webhooks", &body, "/alerts/settings").await;
    assert!(
        first.contains("whsec_"),
        "the first answer shows the secret"
    );
    assert!(page.contains("http://127.0.0.1:9/hook was added"), "{page}");
    assert!(
        !page.contains("whsec_"),
        "the repeat never shows the secret"
    );
    assert_eq!(
        app.scalar_i64("select count(*) from webhook_endpoints")
            .await,
        1
    );
}

#[tokio::test]
async fn a_reloaded_roll_all_rolls_once() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    app.create_key("mine", &[]).await;
    let me = app
        .scalar_i64(&format!("select id from accounts where email = '{email}'"))
        .await;
    let off = format!("/members/{me}/offboarding");
    let body = app.form_body(&off, &[]).await;
    let (first, page) = twice(&app, &format!("{off}/roll-all"), &body, &off).await;
    let token = token_of(&first).expect("the new secret is shown");
    assert!(page.contains("1 API key(s)"), "{page}");
    assert_eq!(app.echo(&token, "hi").await.status(), 200);
    assert_eq!(
        app.scalar_i64("select count(*) from key_secrets").await,
        2,
        "one roll of the one key"
    );
}

#[tokio::test]
async fn a_reloaded_new_workspace_form_makes_one() {
    let app = spawn_app().await;
    app.signed_up().await;
    let body = app
        .form_body("/workspaces/new", &[("name", "Platform".to_owned())])
        .await;
    let r = app.post_body("/workspaces", &body).await;
    assert_eq!(r.status(), 303);
    let r = app.post_body("/workspaces", &body).await;
    assert_eq!(r.status(), 303);
    let page = app.get_html("/members").await;
    assert!(
        page.contains("Already done: the workspace “Platform” was created"),
        "{page}"
    );
    assert_eq!(
        app.scalar_i64("select count(*) from accounts where kind = 'team'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_form_id_the_server_never_issued_acts_as_a_repeat() {
    let app = spawn_app().await;
    app.signed_up().await;
    app.create_key("svc", &[]).await;
    let id = app.key_id("svc").await;
    let path = format!("/keys/{id}/roll");
    for forged in [
        "",
        "short",
        &"x".repeat(33),
        "../../../../../../../../../etc/pw",
    ] {
        let mut body = app.form_body(&path, &[]).await;
        body.retain(|(k, _)| k != "form_id");
        body.push(("form_id".into(), forged.into()));
        let r = app.post_body(&path, &body).await;
        assert_eq!(r.status(), 303, "{forged:?}");
    }
    assert_eq!(
        app.scalar_i64(&format!(
            "select count(*) from key_secrets where key_id = {id}"
        ))
        .await,
        1,
        "nothing rolled"
    );
}

#[tokio::test]
async fn a_webhook_secret_rolls_once_per_form_and_the_new_one_signs() {
    let app = spawn_app_with(|s| s.webhook_allow_private_targets = true).await;
    app.signed_up().await;
    let fields = [
        ("url", "http://127.0.0.1:9/hook".to_owned()),
        ("events", "limit.threshold".to_owned()),
    ];
    let body = app.form_body("/alerts/settings", &fields).await;
    let r = app.post_body("/alerts/webhooks", &body).await;
    let first = r.text().await.unwrap();
    let secret = |html: &str| {
        between(html, "id=\"webhook-secret\">", "</code>")
            .expect("a secret is shown")
            .to_owned()
    };
    let original = secret(&first);
    let settings = app.get_html("/alerts/settings").await;
    let id = between(&settings, "action=\"/alerts/webhooks/", "/test\"")
        .unwrap()
        .to_owned();
    let path = format!("/alerts/webhooks/{id}/roll");
    let body = app.form_body("/alerts/settings", &[]).await;
    let (answer, page) = twice(&app, &path, &body, "/alerts/settings").await;
    let rolled = secret(&answer);
    assert_ne!(rolled, original);
    assert!(page.contains("was rolled") && !page.contains(&rolled));
    let stored: String = {
        use sqlx::Connection;
        let sql = "select secret from webhook_endpoints";
        if app.db_url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
    };
    assert_eq!(
        stored, rolled,
        "deliveries are signed with the secret shown, once"
    );
    // Another workspace cannot roll it.
    let other = crate::helpers::spawn_clone(&app);
    other.signed_up().await;
    let r = other.post_form(&path, "/alerts/settings", &[]).await;
    assert_eq!(r.status(), 404);
}
