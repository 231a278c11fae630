//! Workspaces people make (zero credits, the creator as owner, a bound per person), their
//! settings (rename, owners only) and deletion (keys revoked, members' sessions out at
//! once, hidden from switchers; a personal workspace never); management key rolls, alone
//! and in Roll all; the audit CSV streamed across pages.

use reqwest::Method;

use crate::helpers::*;
use crate::management::{call, management_key};
use crate::teams::{invite, join, member_id, team};

/// Makes a workspace from `app`'s session (which switches into it); its id.
async fn new_workspace(app: &TestApp, name: &str) -> i64 {
    let r = app
        .post_form("/workspaces", "/workspaces/new", &[("name", name.into())])
        .await;
    assert_eq!(r.status(), 303, "workspace {name} created");
    assert_eq!(r.headers()["location"], "/members");
    let html = app.get_html("/members").await;
    between(&html, "Workspace id: <code>", "</code>")
        .unwrap()
        .parse()
        .unwrap()
}

/// How many team workspaces exist (live or deleted).
async fn team_rows(app: &TestApp) -> i64 {
    app.scalar_i64("select count(*) from accounts where kind = 'team'")
        .await
}

/// The switcher's options of a page (empty when it is not shown: one workspace).
fn switcher(html: &str) -> String {
    between(html, "id=\"workspace-switch\"", "</select>")
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn a_new_workspace_starts_with_no_credits_its_creator_as_owner_and_is_bounded() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    let personal = app
        .scalar_i64(&format!("select id from accounts where email = '{email}'"))
        .await;
    let ws = new_workspace(&app, "  Acme   platform ").await;
    let html = app.get_html("/members").await;
    assert!(
        html.contains("Members of “Acme platform”"),
        "trimmed, spaces collapsed"
    );
    assert!(html.contains(&format!("{email} <span class=\"muted\">(you)</span>")));
    assert!(html.contains("<td data-label=\"Role\">Owner</td>"));
    assert!(
        html.contains("<strong>0.00</strong>"),
        "the layout shows no credits"
    );
    assert!(switcher(&html).contains("Acme platform (Owner)"));
    assert_eq!(
        app.scalar_i64(&format!("select balance from accounts where id = {ws}"))
            .await,
        0,
        "never the sign-up grant"
    );
    assert_eq!(
        app.scalar_i64(&format!(
            "select balance from accounts where id = {personal}"
        ))
        .await,
        5_000_000,
        "the creator's own credits stay theirs"
    );
    assert_eq!(
        app.scalar_i64(&format!(
            "select count(*) from audit_events where account_id = {ws} and action = 'workspace.created'"
        ))
        .await,
        1
    );
    // Nobody signs in as the workspace: its reserved address has no usable password.
    let reserved: String = {
        use sqlx::Connection;
        let sql = format!("select email from accounts where id = {ws}");
        if is_postgres() {
            let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
            sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
            sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap()
        }
    };
    assert!(reserved.ends_with("@workspace.invalid"), "{reserved}");
    let other = spawn_clone(&app);
    for password in ["!", "", PASSWORD] {
        assert_eq!(other.login(&reserved, password).await.status(), 401);
    }
    // A name that breaks the rules is shown back with its error; nothing is made.
    let before = team_rows(&app).await;
    for bad in [
        "",
        "   ",
        "a\0b",
        "tab\there",
        "bell\u{7}",
        "\u{202e}evil",
        &"x".repeat(65),
    ] {
        let r = app
            .post_form("/workspaces", "/workspaces/new", &[("name", bad.into())])
            .await;
        assert_eq!(r.status(), 422, "{bad:?}");
        assert!(r.text().await.unwrap().contains("Nothing was created"));
    }
    assert_eq!(team_rows(&app).await, before);
    // At most 20 live ones each; a deleted one frees its place.
    for i in 2..=20 {
        new_workspace(&app, &format!("ws {i}")).await;
    }
    let r = app
        .post_form(
            "/workspaces",
            "/workspaces/new",
            &[("name", "one too many".into())],
        )
        .await;
    assert_eq!(r.status(), 422);
    let page = r.text().await.unwrap();
    assert!(page.contains("already have 20 workspaces"), "{page}");
    assert!(
        page.contains("value=\"one too many\""),
        "what was typed is kept"
    );
    assert_eq!(team_rows(&app).await, before + 19);
    let r = app
        .post_form(
            "/workspace/delete",
            "/workspace/delete",
            &[("confirm_name", "ws 20".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    new_workspace(&app, "one more").await;
}

#[tokio::test]
async fn only_owners_rename_and_names_are_checked() {
    let t = team().await;
    let owner = &t.app;
    let r = owner
        .post_form(
            "/workspace/settings",
            "/workspace/settings",
            &[("name", " Platform  team ".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(owner
        .get_html("/workspace/settings")
        .await
        .contains("Settings of “Platform team”"));
    let name_now = || async {
        owner
            .scalar_i64("select count(*) from accounts where name = 'Platform team'")
            .await
    };
    for bad in ["a\0b", "esc\u{1b}[31m", "line\nbreak", "", &"é".repeat(65)] {
        let r = owner
            .post_form(
                "/workspace/settings",
                "/workspace/settings",
                &[("name", bad.into())],
            )
            .await;
        assert_eq!(r.status(), 422, "{bad:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains("Nothing was saved") && html.contains("field-error"));
        assert_eq!(name_now().await, 1, "unchanged after {bad:?}");
    }
    assert_eq!(
        owner
            .scalar_i64("select count(*) from audit_events where action = 'workspace.renamed'")
            .await,
        1
    );
    // Viewer, developer and admin: 403 on every settings and delete route, POSTs included.
    for member in &t.members {
        assert_eq!(member.get("/workspace/settings").await.status(), 403);
        assert_eq!(member.get("/workspace/delete").await.status(), 403);
        let r = member
            .post_form(
                "/workspace/settings",
                "/keys",
                &[("name", "hijacked".into())],
            )
            .await;
        assert_eq!(r.status(), 403);
        let r = member
            .post_form(
                "/workspace/delete",
                "/keys",
                &[("confirm_name", "Platform team".into())],
            )
            .await;
        assert_eq!(r.status(), 403);
        assert!(!member
            .get_html("/members")
            .await
            .contains("/workspace/settings"));
    }
    assert_eq!(name_now().await, 1);
    assert!(owner
        .get_html("/members")
        .await
        .contains("/workspace/settings"));
}

#[tokio::test]
async fn deleting_a_workspace_revokes_its_keys_and_ends_its_members_sessions() {
    let app = spawn_app().await;
    let owner_email = app.signed_up().await;
    // The personal workspace says why it has no Delete, and refuses a crafted one.
    let settings = app.get_html("/workspace/settings").await;
    assert!(settings.contains("cannot be deleted"));
    assert!(!settings.contains("href=\"/workspace/delete\""));
    assert_eq!(app.get("/workspace/delete").await.status(), 400);
    let r = app
        .post_form(
            "/workspace/delete",
            "/keys",
            &[("confirm_name", owner_email.clone())],
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("personal workspace"));
    assert_eq!(
        app.scalar_i64("select count(*) from accounts where deleted_at is not null")
            .await,
        0
    );

    let ws = new_workspace(&app, "Doomed").await;
    app.execute_sql(&format!(
        "update accounts set balance = 7000000 where id = {ws}"
    ))
    .await;
    let dev_email = format!("dev-{owner_email}");
    let path = invite(&app, &dev_email, "developer").await;
    let dev = join(&app, &dev_email, &path).await;
    assert!(switcher(&dev.get_html("/keys").await).contains("Doomed (Developer)"));
    let token = app.create_key("doomed-key", &[]).await;
    let dev_token = dev.create_key("dev-key", &[]).await;
    let mk = management_key(&app, "doomed-mk", false).await;
    assert_eq!(app.echo(&token, "before").await.status(), 200);
    assert_eq!(dev.echo(&dev_token, "before").await.status(), 200);
    assert_eq!(
        call(&app, Method::GET, "/api/v1/keys", &mk, None).await.0,
        200
    );
    app.post_form(
        "/members/invite",
        "/members",
        &[
            ("email", "later@example.com".into()),
            ("role", "viewer".into()),
        ],
    )
    .await;

    // The confirmation page says what goes, credits included; a wrong name deletes nothing.
    let page = app.get_html("/workspace/delete").await;
    assert!(page.contains("2 API keys and 1 management keys"), "{page}");
    let left: f64 = between(&page, "remaining <strong>", " credits are gone")
        .expect("the credits left are named")
        .parse()
        .unwrap();
    assert!(left > 6.0 && left <= 7.0, "{left}");
    let r = app
        .post_form(
            "/workspace/delete",
            "/workspace/delete",
            &[("confirm_name", "doomed".into())],
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("Nothing was deleted"));
    assert_eq!(app.echo(&token, "still").await.status(), 200);

    let r = app
        .post_form(
            "/workspace/delete",
            "/workspace/delete",
            &[("confirm_name", " Doomed ".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/keys");
    let html = app.get_html("/keys").await;
    assert!(html.contains(
        "Deleted “Doomed”: 2 API keys and 1 management keys revoked, 2 members removed."
    ));
    assert!(!html.contains("Doomed ("), "gone from the owner's switcher");
    // Every token fails on its next request.
    assert_eq!(app.echo(&token, "after").await.status(), 401);
    assert_eq!(dev.echo(&dev_token, "after").await.status(), 401);
    assert_eq!(
        call(&app, Method::GET, "/api/v1/keys", &mk, None).await.0,
        401
    );
    // The developer's open session no longer reaches it, and cannot switch back.
    let html = dev.get_html("/keys").await;
    assert!(html.contains("no longer a member"));
    assert!(!html.contains("dev-key") && !html.contains("Doomed"));
    let r = dev
        .client
        .post(dev.url("/workspace"))
        .form(&[
            ("csrf_token", csrf_of(&dev.get_html("/keys").await)),
            ("workspace", ws.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // No credits reach it any more.
    let db = app.db_url.clone();
    let id = ws.to_string();
    let out = tokio::task::spawn_blocking(move || {
        crate::cli::lowrouter(
            &db,
            &["credits", "grant", "--workspace", &id, "--amount", "3"],
            "",
        )
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "no grant to a deleted workspace");
    // The record stays: the row (marked), its usage, its audit event; invitations revoked.
    for (sql, want) in [
        (format!("select count(*) from accounts where id = {ws} and deleted_at is not null"), 1),
        (format!("select count(*) from api_keys where account_id = {ws} and status <> 'revoked'"), 0),
        (format!("select count(*) from management_keys where account_id = {ws} and revoked_at is null"), 0),
        (format!("select count(*) from invitations where account_id = {ws} and revoked_at is null and accepted_at is null"), 0),
        (format!("select count(*) from workspace_members where account_id = {ws}"), 0),
        (format!("select count(*) from usage where account_id = {ws}"), 3),
        (format!("select count(*) from audit_events where account_id = {ws} and action = 'workspace.deleted'"), 1),
    ] {
        assert_eq!(app.scalar_i64(&sql).await, want, "{sql}");
    }
}

#[tokio::test]
async fn management_keys_roll_alone_and_in_roll_all() {
    let t = team().await;
    let owner = &t.app;
    let mk = management_key(owner, "terraform", true).await;
    let page = owner.get_html("/management-keys").await;
    let public_id = between(&page, "action=\"/management-keys/", "/roll\"")
        .unwrap()
        .to_owned();
    let r = owner
        .post_form(
            &format!("/management-keys/{public_id}/roll"),
            "/management-keys",
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains("no grace period"));
    let new = between(&html, "value=\"lr-mk-", "\"")
        .map(|t| format!("lr-mk-{t}"))
        .unwrap();
    assert_ne!(new, mk);
    assert_eq!(
        call(owner, Method::GET, "/api/v1/keys", &mk, None).await.0,
        401
    );
    assert_eq!(
        call(owner, Method::GET, "/api/v1/keys", &new, None).await.0,
        200
    );
    // The same key: one row, its public id, name and read-only access kept.
    let (status, _) = call(
        owner,
        Method::POST,
        "/api/v1/keys",
        &new,
        Some(serde_json::json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, 403, "still read-only");
    assert_eq!(
        owner
            .scalar_i64(&format!(
                "select count(*) from management_keys where public_id = '{public_id}' and name = 'terraform'"
            ))
            .await,
        1
    );
    assert_eq!(
        owner
            .scalar_i64("select count(*) from audit_events where action = 'management_key.rolled'")
            .await,
        1
    );

    // Roll all of a leaving admin (still a member): their API key and their management key.
    let admin = &t.members[2];
    let api_token = admin.create_key("admin-key", &[]).await;
    let admin_mk = management_key(admin, "admin-ci", false).await;
    let admin_id = member_id(owner, &t.emails[2]).await;
    let off = owner
        .get_html(&format!("/members/{admin_id}/offboarding"))
        .await;
    assert!(off.contains("admin-ci") && off.contains("/roll\""));
    assert!(off.contains("Roll all 1 API keys and 1 management keys"));
    let r = owner
        .post_form(
            &format!("/members/{admin_id}/offboarding/roll-all"),
            &format!("/members/{admin_id}/offboarding"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(html.contains("“admin-key”") && html.contains("“admin-ci”"));
    let new_mk = between(&html, "value=\"lr-mk-", "\"")
        .map(|t| format!("lr-mk-{t}"))
        .unwrap();
    let new_api = token_of(&html).unwrap();
    assert_ne!(new_api, api_token);
    assert_eq!(
        call(owner, Method::GET, "/api/v1/keys", &admin_mk, None)
            .await
            .0,
        401
    );
    assert_eq!(
        call(owner, Method::GET, "/api/v1/keys", &new_mk, None)
            .await
            .0,
        200
    );
    assert_eq!(owner.echo(&new_api, "rolled").await.status(), 200);
    // Removed, the management key they own (rolled or not) dies with their membership.
    let r = owner
        .post_form(&format!("/members/{admin_id}/remove"), "/members", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        call(owner, Method::GET, "/api/v1/keys", &new_mk, None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn the_audit_csv_streams_every_event_across_pages() {
    let app = spawn_app().await;
    app.signed_up().await;
    let ws: i64 = between(
        &app.get_html("/members").await,
        "Workspace id: <code>",
        "</code>",
    )
    .unwrap()
    .parse()
    .unwrap();
    // 2,500 events (the export reads 1,000 per page), and one with cells to defuse.
    app.execute_sql(&format!(
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 2500) \
         insert into audit_events (account_id, at, actor_kind, actor_label, action, details) \
         select {ws}, 1700000000000 + i, 'system', 'bulk-' || cast(i as text), 'settings.changed', '{{}}' from n"
    ))
    .await;
    app.execute_sql(&format!(
        "insert into audit_events (account_id, at, actor_kind, actor_label, action, details) \
         values ({ws}, 1800000000000, 'system', '=cmd,\"x\"', 'settings.changed', '{{\"a\":1}}')"
    ))
    .await;
    let total = app
        .scalar_i64(&format!(
            "select count(*) from audit_events where account_id = {ws}"
        ))
        .await;
    let r = app.get("/audit.csv").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        r.headers().get("content-length").is_none(),
        "streamed, not built in memory"
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0],
        "time,actor_kind,actor,action,target_kind,target,details,client_address,user_agent"
    );
    assert_eq!(lines.len() as i64, total + 1, "every event once");
    let bulk: Vec<i64> = lines
        .iter()
        .filter_map(|l| between(l, ",system,bulk-", ","))
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        bulk,
        (1..=2500).rev().collect::<Vec<_>>(),
        "newest first, none twice"
    );
    assert!(csv.contains(",system,\"'=cmd,\"\"x\"\"\",settings.changed,,,\"{\"\"a\"\":1}\",,"));
    // Filters still apply.
    let csv = app.get_html("/audit.csv?actor=bulk-250").await;
    assert_eq!(
        csv.split_terminator("\r\n").count(),
        1 + 2,
        "bulk-250 and bulk-2500"
    );
}
