//! Invitations are no mail cannon (security issue, item 3): budgets per inviter, per
//! workspace and per invited address across workspaces, counted from the database's rows
//! (revoking and inviting again gives nothing back; concurrent invitations, and on
//! PostgreSQL another process's, are counted too); a refusal is a form error that says
//! which budget and sends nothing; the mail quotes the workspace's name as its members'
//! words, escaped in HTML, and says who invited. Through HTTP and a real SMTP server.

use std::time::Duration;

use lowrouter::config::{Secret, Settings};
use lowrouter::domain::team::InvitationBudget;
use reqwest::header;

use crate::email_verify::PUBLIC;
use crate::helpers::*;
use crate::smtp_sink::SmtpSink;
use crate::teams::{invite, join};

/// Invitations mailed through `smtp_url` (verification stays off), with `budget`.
fn mail_and_budget(s: &mut Settings, smtp_url: Option<String>, budget: InvitationBudget) {
    if let Some(url) = smtp_url {
        s.smtp_url = Some(Secret::new(url));
        s.mail_from = Some("LowRouter <noreply@example.test>".into());
        s.public_base_url = Some(PUBLIC.into());
    }
    s.invitation_budget = budget;
}

/// Sends the invite form from `app`'s session.
async fn try_invite(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_form(
        "/members/invite",
        "/members",
        &[("email", email.into()), ("role", "viewer".into())],
    )
    .await
}

/// A refusal: 429 with Retry-After, the Members page with the form's error saying `says`,
/// what was typed kept, and no link shown.
async fn assert_refused(r: reqwest::Response, email: &str, says: &str) {
    assert_eq!(r.status(), 429, "{says}");
    let wait: u64 = r.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    let html = r.text().await.unwrap();
    let error = between(&html, "id=\"invite-email-error\">", "</p>").expect("a form error");
    assert!(
        error.contains(says) && error.contains("Nothing was sent"),
        "{error}"
    );
    assert!(
        html.contains(&format!("value=\"{email}\"")),
        "what was typed"
    );
    assert!(!html.contains("Invitation link"), "no link");
}

#[tokio::test]
async fn each_budget_refuses_with_a_form_error_and_sends_nothing() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let budget = InvitationBudget {
        per_inviter: 3,
        per_workspace: 5,
        per_address: 2,
    };
    let app = spawn_app_with(|s| mail_and_budget(s, Some(sink.url()), budget)).await;
    let owner = app.signed_up().await;
    assert!(app.get_html("/members").await.contains(
        "At most 3 invitations a day per person, 5 per workspace, and 2 to any one address."
    ));
    // An admin: the owner's first invitation, and the workspace's.
    let admin_email = format!("admin-{owner}");
    let path = invite(&app, &admin_email, "admin").await;
    let admin = join(&app, &admin_email, &path).await;
    // One address twice (the second replaces the first): that address's budget is spent,
    // and the owner has made 3, theirs.
    let x = format!("x-{owner}");
    invite(&app, &x, "viewer").await;
    invite(&app, &x, "viewer").await;
    sink.wait_for(3).await;

    let y = format!("y-{owner}");
    assert_refused(
        try_invite(&app, &y).await,
        &y,
        "You have made 3 invitations in the last 24 hours",
    )
    .await;
    // Another member of the workspace, to the spent address.
    assert_refused(
        try_invite(&admin, &x).await,
        &x,
        &format!("{x} has been invited 2 times in the last 24 hours"),
    )
    .await;
    // Revoking the open invitation gives nothing back: the revoked rows still count.
    let html = app.get_html("/members").await;
    let id = between(&html, "action=\"/invitations/", "/revoke")
        .unwrap()
        .to_owned();
    let r = app
        .post_form(&format!("/invitations/{id}/revoke"), "/members", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_refused(try_invite(&admin, &x).await, &x, "has been invited 2 times").await;
    // The workspace's budget: the admin's two make five.
    invite(&admin, &y, "viewer").await;
    invite(&admin, &format!("z-{owner}"), "viewer").await;
    let w = format!("w-{owner}");
    assert_refused(
        try_invite(&admin, &w).await,
        &w,
        "This workspace has made 5 invitations in the last 24 hours",
    )
    .await;
    // The address's budget holds across workspaces: a stranger's own.
    let stranger = spawn_clone(&app);
    stranger.signed_up().await;
    assert_refused(
        try_invite(&stranger, &x).await,
        &x,
        "has been invited 2 times",
    )
    .await;

    // Only the five invitations made were mailed; the refused ones stored nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 5, "nothing sent beyond the budgets");
    assert_eq!(app.scalar_i64("select count(*) from invitations").await, 5);

    // A day later each budget has room again.
    app.execute_sql("update invitations set created_at = created_at - 86400001")
        .await;
    assert_eq!(try_invite(&stranger, &x).await.status(), 200);
    assert_eq!(try_invite(&admin, &w).await.status(), 200);
    sink.wait_for(7).await;
}

/// Twelve invitations of one address sent at once, by four people from their own
/// workspaces (so they share no row but the address's; each form with its own one-time id;
/// on PostgreSQL every other one through a second process on the same database): the
/// address's budget of three lets exactly three through.
#[tokio::test]
async fn budgets_hold_under_concurrent_invitations_and_across_processes() {
    let budget = InvitationBudget {
        per_inviter: 50,
        per_workspace: 50,
        per_address: 3,
    };
    let app = spawn_app_with(|s| mail_and_budget(s, None, budget)).await;
    // Sessions live in the database: each person's cookie works on the peer too.
    let peer = if is_postgres() {
        Some(spawn_peer(&app).await)
    } else {
        None
    };
    let target = "victim@example.net";
    let mut people = Vec::new();
    for _ in 0..4 {
        let p = spawn_clone(&app);
        p.signed_up().await;
        people.push(p);
    }
    let mut forms = Vec::new();
    for round in 0..3 {
        for (i, p) in people.iter().enumerate() {
            let fields = [("email", target.to_owned()), ("role", "viewer".to_owned())];
            let server = match &peer {
                Some(peer) if (round + i) % 2 == 1 => peer,
                _ => &app,
            };
            forms.push((
                p,
                server.url("/members/invite"),
                p.form_body("/members", &fields).await,
            ));
        }
    }
    let sends = forms
        .iter()
        .map(|(p, url, body)| p.client.post(url).form(body).send());
    let statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let made = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((made, refused), (3, 9), "{statuses:?}");
    let rows = app
        .scalar_i64(&format!(
            "select count(*) from invitations where email = '{target}'"
        ))
        .await;
    assert_eq!(rows, 3);
}

/// A workspace named like a phishing line: the mail quotes the name as its members' (in
/// both parts; escaped in HTML), names the inviter, and keeps the subject our own.
#[tokio::test]
async fn the_mail_quotes_the_workspace_name_and_says_who_invited() {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_app_with(|s| {
        mail_and_budget(s, Some(sink.url()), InvitationBudget::default());
    })
    .await;
    let owner = app.signed_up().await;
    let name = "Refund pending: claim at <b>evil.example</b> & co";
    let r = app
        .post_form(
            "/workspace/settings",
            "/workspace/settings",
            &[("name", name.into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let bob = format!("bob-{owner}");
    let path = invite(&app, &bob, "developer").await;

    let mail = &sink.wait_for(1).await[0];
    assert_eq!(mail["rcpt_tos"][0], bob.as_str());
    assert_eq!(mail["subject"], "You are invited to a LowRouter workspace");
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "{owner} invited you to join a workspace on LowRouter, as Developer."
        )),
        "{text}"
    );
    assert!(
        text.contains("quoted as its members wrote it (LowRouter did not write or check it)")
            && text.contains(&format!("“{name}”")),
        "{text}"
    );
    assert!(text.contains(&format!("{PUBLIC}{path}")), "the link");
    let html = mail["html"].as_str().unwrap();
    assert!(
        // askama's escapes: numeric entities.
        html.contains("“Refund pending: claim at &#60;b&#62;evil.example&#60;/b&#62; &#38; co”"),
        "{html}"
    );
    assert!(!html.contains("<b>evil"), "never markup of theirs");
    assert!(html.contains(&format!("<strong>{owner}</strong> invited you")));
    assert!(html.contains(&format!("href=\"{PUBLIC}{path}\"")));

    // The link's page says who invited, too.
    let page = spawn_clone(&app).get_html(&path).await;
    assert!(
        page.contains(&format!("<strong>{owner}</strong> invited")),
        "{page}"
    );
}
