//! Teams over HTTP: workspaces, roles enforced on every dashboard route (table-driven over
//! every route x role), invitations, removal ending a member's access at once, offboarding
//! with Roll all, the audit log (each event kind, its actor, `GET /api/v1/audit`), and the
//! migration of existing accounts into workspaces.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;
use crate::management::{call, management_key};

/// The role names as the forms take them.
pub(crate) const ROLES: [&str; 4] = ["viewer", "developer", "admin", "owner"];

/// Invites `email` as `role` from the owner's session; the one-time link's path.
pub(crate) async fn invite(owner: &TestApp, email: &str, role: &str) -> String {
    let r = owner
        .post_form(
            "/members/invite",
            "/members",
            &[("email", email.into()), ("role", role.into())],
        )
        .await;
    assert_eq!(r.status(), 200, "invitation created");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    let link = between(&html, "value=\"http", "\"").expect("the link is shown");
    let path = &link[link.find("/invitations/").unwrap()..];
    path.to_owned()
}

/// A new person (own client) who signs up as `email` and accepts the invitation at `path`.
pub(crate) async fn join(owner: &TestApp, email: &str, path: &str) -> TestApp {
    let p = spawn_clone(owner);
    assert_eq!(p.signup(email).await.status(), 303);
    let r = p.post_form(path, path, &[]).await;
    assert_eq!(r.status(), 303, "accepted");
    p
}

pub(crate) struct Team {
    pub(crate) app: TestApp,
    /// Sessions by role, weakest first (viewer, developer, admin); the owner is `app`.
    pub(crate) members: Vec<TestApp>,
    pub(crate) emails: Vec<String>,
}

/// An owner with a viewer, a developer and an admin in their workspace.
pub(crate) async fn team() -> Team {
    let app = spawn_app().await;
    let owner = app.signed_up().await;
    let mut members = Vec::new();
    let mut emails = vec![];
    for role in &ROLES[..3] {
        let email = format!("{role}-{}", owner);
        let path = invite(&app, &email, role).await;
        members.push(join(&app, &email, &path).await);
        emails.push(email);
    }
    emails.push(owner);
    Team {
        app,
        members,
        emails,
    }
}

/// The member id in a Members page's remove form for `email`.
pub(crate) async fn member_id(app: &TestApp, email: &str) -> i64 {
    let html = app.get_html("/members").await;
    let row = &html[html.find(&format!("{email}</td>")).expect("member listed")..];
    between(row, "action=\"/members/", "/role")
        .unwrap()
        .parse()
        .unwrap()
}

/// The current workspace's id, from the Members page.
pub(crate) async fn workspace_id(app: &TestApp) -> String {
    let html = app.get_html("/members").await;
    between(&html, "Workspace id: <code>", "</code>")
        .unwrap()
        .to_owned()
}

/// What each route needs, as this test expects it. The server's table must say exactly the
/// same: a new route without a line here fails this test.
fn expected_rules() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("get", "/", "public"),
        ("get", "/signup", "public"),
        ("post", "/signup", "public"),
        ("get", "/login", "public"),
        ("post", "/login", "public"),
        ("post", "/logout", "public"),
        ("post", "/sessions/others/logout", "viewer"),
        ("get", "/keys", "viewer"),
        ("post", "/keys", "developer"),
        ("get", "/keys/new", "developer"),
        ("get", "/keys/{id}/edit", "own key"),
        ("post", "/keys/{id}/edit", "own key"),
        ("post", "/keys/{id}/disable", "own key"),
        ("post", "/keys/{id}/enable", "own key"),
        ("get", "/keys/{id}/delete", "own key"),
        ("post", "/keys/{id}/delete", "own key"),
        ("get", "/keys/{id}", "viewer"),
        ("get", "/keys/{id}/roll", "own key"),
        ("post", "/keys/{id}/roll", "own key"),
        ("post", "/keys/{id}/retire", "own key"),
        ("post", "/keys/{id}/extend", "own key"),
        ("get", "/management-keys", "admin"),
        ("post", "/management-keys", "admin"),
        ("post", "/management-keys/{id}/revoke", "admin"),
        ("post", "/management-keys/{id}/roll", "admin"),
        ("get", "/alerts", "viewer"),
        ("post", "/alerts/read", "viewer"),
        ("get", "/alerts/settings", "admin"),
        ("post", "/alerts/settings", "admin"),
        ("post", "/alerts/webhooks", "admin"),
        ("post", "/alerts/webhooks/{id}/delete", "admin"),
        ("post", "/alerts/webhooks/{id}/test", "admin"),
        ("post", "/alerts/webhooks/{id}/roll", "admin"),
        ("post", "/alerts/keys/{id}/auto-disable", "own key"),
        ("get", "/usage", "viewer"),
        ("get", "/usage.csv", "viewer"),
        ("get", "/usage/{generation_id}", "viewer"),
        ("get", "/verify-email", "public"),
        ("post", "/verify-email", "public"),
        ("post", "/verify-email/resend", "viewer"),
        ("post", "/workspace", "viewer"),
        ("get", "/workspaces/new", "viewer"),
        ("post", "/workspaces", "viewer"),
        ("get", "/workspace/settings", "owner"),
        ("post", "/workspace/settings", "owner"),
        ("get", "/workspace/delete", "owner"),
        ("post", "/workspace/delete", "owner"),
        ("get", "/members", "viewer"),
        ("post", "/members/invite", "admin"),
        ("post", "/members/{user}/role", "admin"),
        ("post", "/members/{user}/remove", "admin"),
        ("post", "/members/leave", "viewer"),
        ("get", "/members/{user}/offboarding", "admin"),
        ("post", "/members/{user}/offboarding/roll-all", "admin"),
        ("post", "/members/{user}/offboarding/hand-over", "admin"),
        ("post", "/invitations/{id}/revoke", "admin"),
        ("get", "/invitations/{token}", "public"),
        ("post", "/invitations/{token}", "viewer"),
        ("get", "/audit", "admin"),
        ("get", "/audit.csv", "admin"),
        ("get", "/static/{file}", "public"),
    ]
}

fn need_name(n: lowrouter::web::access::Need) -> String {
    use lowrouter::web::access::Need;
    match n {
        Need::Public => "public".into(),
        Need::Role(r) => r.as_str().into(),
        Need::OwnKey => "own key".into(),
    }
}

/// Every registered dashboard route x every role: the server's table is the expected one,
/// and each route answers 403 exactly to the roles below its rule (developers: on keys
/// they did not create), whatever the request is otherwise.
#[tokio::test]
async fn every_route_is_enforced_for_every_role() {
    let server: BTreeSet<(String, String, String)> = lowrouter::web::RULES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned(), need_name(r.need)))
        .collect();
    let expected: BTreeSet<(String, String, String)> = expected_rules()
        .into_iter()
        .map(|(m, p, n)| (m.to_owned(), p.to_owned(), n.to_owned()))
        .collect();
    assert_eq!(
        server, expected,
        "every route needs a rule, and this test must know it"
    );

    let t = team().await;
    // A fifth member for the admin routes to act on, and a key each for owner and developer.
    let victim_email = format!("victim-{}", t.emails[3]);
    let path = invite(&t.app, &victim_email, "viewer").await;
    join(&t.app, &victim_email, &path).await;
    let victim = member_id(&t.app, &victim_email).await;
    t.app.create_key("owner-key", &[]).await;
    let owner_key = t.app.key_id("owner-key").await;
    t.members[1].create_key("dev-key", &[]).await;
    let dev_key = t.app.key_id("dev-key").await;

    let sessions: Vec<&TestApp> = t.members.iter().chain([&t.app]).collect();
    for (rank, session) in sessions.iter().enumerate() {
        let role = ROLES[rank];
        let csrf = csrf_of(&session.get_html("/members").await);
        for (method, pattern, need) in expected_rules() {
            // Public routes need no role; these three would end the session under test.
            if need == "public"
                || ["/logout", "/members/leave", "/sessions/others/logout"].contains(&pattern)
            {
                continue;
            }
            let keys = if need == "own key" {
                vec![owner_key, dev_key]
            } else {
                vec![owner_key]
            };
            for key in keys {
                let path = pattern
                    .replace("{id}", &key.to_string())
                    .replace("{user}", &victim.to_string())
                    .replace("{generation_id}", "gen-1-x")
                    .replace("{token}", &"A".repeat(43));
                let r = if method == "get" {
                    session.get(&path).await
                } else {
                    session
                        .client
                        .post(session.url(&path))
                        .form(&[("csrf_token", csrf.as_str())])
                        .send()
                        .await
                        .unwrap()
                };
                let status = r.status().as_u16();
                let allowed = match need {
                    "own key" => rank >= 2 || (rank == 1 && key == dev_key),
                    min => ROLES.iter().position(|r| *r == min).unwrap() <= rank,
                };
                if allowed {
                    assert_ne!(status, 403, "{role} may {method} {path}");
                    let to_login = r.headers().get("location").is_some_and(|l| l == "/login");
                    assert!(!to_login, "{role} {method} {path} kept the session");
                } else {
                    assert_eq!(status, 403, "{role} must not {method} {path}");
                }
            }
        }
    }
}

/// Viewers see keys and usage without any action; developers get actions on their own keys.
#[tokio::test]
async fn pages_offer_only_what_the_role_may_do() {
    let t = team().await;
    t.app.create_key("owner-key", &[]).await;
    let viewer = t.members[0].get_html("/keys").await;
    assert!(viewer.contains("owner-key"));
    assert!(!viewer.contains("/edit\""), "no Edit for viewers");
    assert!(
        !viewer.contains("href=\"/keys/new\""),
        "no New key for viewers"
    );
    assert!(!viewer.contains("/delete\""), "no Delete for viewers");
    let dev = t.members[1].get_html("/keys").await;
    assert!(dev.contains("href=\"/keys/new\""));
    assert!(!dev.contains("/edit\""), "not the owner's key");
    t.members[1].create_key("dev-key", &[]).await;
    let dev = t.members[1].get_html("/keys").await;
    assert_eq!(dev.matches("/edit\"").count(), 1, "only their own key");
    assert!(!t.members[1]
        .get_html("/members")
        .await
        .contains("/remove\""));
    assert!(t.members[2]
        .get_html("/members")
        .await
        .contains("/remove\""));
    // The top bar says which workspace is current, and switches.
    let html = t.members[0].get_html("/keys").await;
    assert!(html.contains(&format!("selected>{} (Viewer)", t.emails[3])));
}

#[tokio::test]
async fn invitations_are_one_use_expire_can_be_revoked_and_need_the_invited_email() {
    let app = spawn_app().await;
    let owner = app.signed_up().await;
    // Someone else's session cannot use it.
    let path = invite(&app, &format!("bob-{owner}"), "developer").await;
    let mallory = spawn_clone(&app);
    mallory.signed_up().await;
    assert_eq!(mallory.post_form(&path, "/keys", &[]).await.status(), 403);
    assert!(mallory.get_html(&path).await.contains("another email"));
    // Malformed links are 404 before any SQL: NUL, too long, other alphabets.
    for bad in [
        "%00",
        "AAAA%00AAAA",
        &"A".repeat(5000),
        "..%2F..%2Fetc",
        "%E2%80%AE",
    ] {
        let r = mallory.get(&format!("/invitations/{bad}")).await;
        assert_eq!(r.status(), 404, "{bad}");
        let csrf = csrf_of(&mallory.get_html("/keys").await);
        let r = mallory
            .client
            .post(mallory.url(&format!("/invitations/{bad}")))
            .form(&[("csrf_token", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
    // A well-formed unknown token says the link is not valid.
    assert_eq!(
        mallory
            .get(&format!("/invitations/{}", "B".repeat(43)))
            .await
            .status(),
        400
    );
    // Bob accepts once; the second use fails.
    let bob = join(&app, &format!("bob-{owner}"), &path).await;
    assert_eq!(bob.post_form(&path, "/keys", &[]).await.status(), 400);
    // Revoked: the link stops working.
    let carol_email = format!("carol-{owner}");
    let path = invite(&app, &carol_email, "viewer").await;
    let html = app.get_html("/members").await;
    let id = between(&html, "action=\"/invitations/", "/revoke")
        .unwrap()
        .to_owned();
    let r = app
        .post_form(&format!("/invitations/{id}/revoke"), "/members", &[])
        .await;
    assert_eq!(r.status(), 303);
    let carol = spawn_clone(&app);
    carol.signup(&carol_email).await;
    assert_eq!(carol.post_form(&path, "/keys", &[]).await.status(), 400);
    // Expired: 7 days later.
    let path = invite(&app, &carol_email, "viewer").await;
    app.execute_sql("update invitations set expires_at = created_at - 1")
        .await;
    assert_eq!(carol.post_form(&path, "/keys", &[]).await.status(), 400);
    // Admins cannot invite owners; developers cannot invite at all.
    let r = bob
        .post_form(
            "/members/invite",
            "/members",
            &[("email", "x@example.com".into()), ("role", "viewer".into())],
        )
        .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn removing_a_member_ends_their_access_at_once_and_offboarding_rolls_their_keys() {
    let t = team().await;
    let dev = &t.members[1];
    let token = dev.create_key("dev-key", &[]).await;
    let dev_key = t.app.key_id("dev-key").await;
    assert!(dev.get_html("/keys").await.contains("dev-key"));
    let dev_id = member_id(&t.app, &t.emails[1]).await;
    let r = t
        .app
        .post_form(&format!("/members/{dev_id}/remove"), "/members", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/members/{dev_id}/offboarding")
    );
    // The developer's open session no longer reaches the workspace: not its keys, not
    // their own key's actions.
    let html = dev.get_html("/keys").await;
    assert!(!html.contains("dev-key"), "removed at once");
    assert!(html.contains("no longer a member"));
    let r = dev
        .post_form(&format!("/keys/{dev_key}/delete"), "/keys", &[])
        .await;
    assert_eq!(r.status(), 404);
    let r = dev
        .client
        .post(dev.url("/workspace"))
        .form(&[
            ("csrf_token", csrf_of(&dev.get_html("/keys").await)),
            ("workspace", workspace_id(&t.app).await),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "cannot switch back");
    // Their key keeps working until rolled.
    assert_eq!(t.app.echo(&token, "still works").await.status(), 200);
    let html = t
        .app
        .get_html(&format!("/members/{dev_id}/offboarding"))
        .await;
    assert!(html.contains("dev-key"));
    assert!(html.contains("created"));
    let r = t
        .app
        .post_form(
            &format!("/members/{dev_id}/offboarding/roll-all"),
            &format!("/members/{dev_id}/offboarding"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let new = token_of(&r.text().await.unwrap()).expect("new secret shown once");
    assert_ne!(new, token);
    assert_eq!(t.app.echo(&new, "new secret").await.status(), 200);
    // By default the old secret stops 24 hours later, used or not (never "when quiet",
    // which a departed member who keeps using it would keep alive).
    assert_eq!(t.app.echo(&token, "for now").await.status(), 200);
    let (deadline, quiet) = (
        t.app
            .scalar_i64(&format!(
                "select retires_at from key_secrets where key_id = {dev_key} and rolled_at is not null"
            ))
            .await,
        t.app
            .scalar_i64(&format!(
                "select count(*) from key_secrets where key_id = {dev_key} and quiet_ms is not null"
            ))
            .await,
    );
    let in_24h = lowrouter::domain::time_util::now_ms() + 24 * 3_600_000;
    assert!((in_24h - deadline).abs() < 60_000, "{deadline} vs {in_24h}");
    assert_eq!(quiet, 0);
    // The last owner cannot leave or be demoted.
    let r = t.app.post_form("/members/leave", "/members", &[]).await;
    assert_eq!(r.status(), 303);
    assert!(t.app.get_html("/members").await.contains("only owner"));
}

/// Every event kind the dashboard, the API and the CLI make is in the log with its actor,
/// never with a secret; the API pages through it; rows cannot be updated.
#[tokio::test]
async fn the_audit_log_records_each_event_with_its_actor() {
    let t = team().await;
    let owner = &t.app;
    let token = owner.create_key("prod", &[]).await;
    let id = owner.key_id("prod").await;
    let r = owner
        .post_form(
            &format!("/keys/{id}/edit"),
            &format!("/keys/{id}/edit"),
            &key_fields("production", &[("rpm_limit", "60")]),
        )
        .await;
    assert_eq!(r.status(), 303);
    owner
        .post_form(&format!("/keys/{id}/disable"), "/keys", &[])
        .await;
    owner
        .post_form(&format!("/keys/{id}/enable"), "/keys", &[])
        .await;
    let r = owner
        .post_form(
            &format!("/keys/{id}/roll"),
            &format!("/keys/{id}/roll"),
            &[("retire", "when_quiet".into())],
        )
        .await;
    assert_eq!(r.status(), 200);
    let rolled = token_of(&r.text().await.unwrap()).unwrap();
    owner
        .post_form(&format!("/keys/{id}/retire"), &format!("/keys/{id}"), &[])
        .await;
    let mk = management_key(owner, "terraform", false).await;
    let (status, created) = call(
        owner,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(serde_json::json!({"name": "ci"})),
    )
    .await;
    assert_eq!(status, 201);
    let ci = created["data"]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        owner,
        Method::PATCH,
        &format!("/api/v1/keys/{ci}"),
        &mk,
        Some(serde_json::json!({"name": "ci-2"})),
    )
    .await;
    assert_eq!(status, 200);
    owner
        .post_form(&format!("/keys/{id}/delete"), "/keys", &[])
        .await;
    let other = spawn_clone(owner);
    assert_eq!(
        other.login(&t.emails[3], "wrong password!").await.status(),
        401
    );
    assert_eq!(other.login(&t.emails[3], PASSWORD).await.status(), 303);
    let db = owner.db_url.clone();
    let ws = workspace_id(owner).await;
    let out = tokio::task::spawn_blocking(move || {
        crate::cli::lowrouter(
            &db,
            &["credits", "grant", "--workspace", &ws, "--amount", "3"],
            "",
        )
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Walk every page two at a time.
    let mut events: Vec<Value> = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = call(
            owner,
            Method::GET,
            &format!("/api/v1/audit?limit=2&cursor={cursor}"),
            &mk,
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        events.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "no event twice");
    // Opaque: no event number (one sequence across every workspace) to read activity off.
    for id in &ids {
        assert!(id.starts_with("evt_") && id.len() == 26, "{id}");
        assert!(!id[4..].bytes().all(|b| b.is_ascii_digit()), "{id}");
    }
    let actions: BTreeSet<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "member.invited",
        "member.joined",
        "key.created",
        "key.edited",
        "key.disabled",
        "key.enabled",
        "key.rolled",
        "key.secret_retired",
        "key.deleted",
        "management_key.created",
        "credits.granted",
        "login.succeeded",
        "login.failed",
    ] {
        assert!(actions.contains(a), "{a} recorded: {actions:?}");
    }
    let find = |action: &str, label: &str| {
        events
            .iter()
            .find(|e| e["action"] == action && e["target"]["label"] == label)
            .unwrap_or_else(|| panic!("{action} {label}"))
    };
    let edit = find("key.edited", "production");
    assert_eq!(edit["actor"]["type"], "user");
    assert_eq!(edit["actor"]["label"], t.emails[3].as_str());
    assert_eq!(edit["details"]["changes"]["name"]["from"], "prod");
    assert_eq!(edit["details"]["changes"]["name"]["to"], "production");
    assert_eq!(edit["details"]["changes"]["rpm_limit"]["to"], 60);
    assert!(
        edit["details"]["changes"].get("region").is_none(),
        "only what changed"
    );
    assert!(edit["target"]["id"].as_str().unwrap().starts_with("key_"));
    assert_eq!(edit["actor"]["client_address"], "127.0.0.1");
    let api_edit = find("key.edited", "ci-2");
    assert_eq!(api_edit["actor"]["type"], "management_key");
    assert_eq!(api_edit["actor"]["label"], "terraform");
    assert_eq!(api_edit["target"]["id"], ci.as_str());
    let grant = events
        .iter()
        .find(|e| e["action"] == "credits.granted")
        .unwrap();
    assert_eq!(grant["actor"]["type"], "cli");
    assert_eq!(grant["details"]["amount"], "3.00");
    // Never a secret.
    let all = serde_json::to_string(&events).unwrap();
    for secret in [&token, &rolled, &mk] {
        assert!(!all.contains(&secret[6..]), "no secret in the log");
    }
    assert!(!all.contains(PASSWORD) && !all.contains("wrong password!"));
    // Filters: one key's history by its public id, an action, bad values named.
    let (_, page) = call(
        owner,
        Method::GET,
        &format!("/api/v1/audit?key={ci}"),
        &mk,
        None,
    )
    .await;
    let kinds: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["key.edited", "key.created"]);
    let (_, page) = call(
        owner,
        Method::GET,
        "/api/v1/audit?action=login.failed",
        &mk,
        None,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    for (q, param) in [
        ("cursor=abc", "cursor"),
        ("cursor=-5", "cursor"),
        ("cursor=7", "cursor"),
        ("action=key.nope", "action"),
        ("actor=a%00b", "actor"),
        ("from=2026-13-01", "from"),
        ("key=key_%00", "key"),
        ("limit=0", "limit"),
    ] {
        let (status, body) =
            call(owner, Method::GET, &format!("/api/v1/audit?{q}"), &mk, None).await;
        assert_eq!(status, 400, "{q}");
        assert_eq!(body["error"]["param"], param, "{q}");
    }
    // Another workspace's key id and events are not reachable.
    let stranger = spawn_clone(owner);
    stranger.signed_up().await;
    let smk = management_key(&stranger, "s", true).await;
    let (status, _) = call(
        &stranger,
        Method::GET,
        &format!("/api/v1/audit?key={ci}"),
        &smk,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, page) = call(&stranger, Method::GET, "/api/v1/audit", &smk, None).await;
    assert!(page["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"]["label"] != t.emails[3].as_str()));
    // The Audit page: admins yes (with the events), developers no; the CSV export.
    let html = t.members[2].get_html("/audit?action=key.edited").await;
    assert!(html.contains("production"));
    // Details read as changes, not JSON.
    assert!(
        html.contains(" → ") && !html.contains("{&quot;changes"),
        "{html}"
    );
    assert_eq!(t.members[1].get("/audit").await.status(), 403);
    let csv = t.members[2].get("/audit.csv").await.text().await.unwrap();
    assert!(csv.starts_with("time,actor_kind,actor,action"));
    assert!(csv.contains("key.rolled"));
    // Append-only, in the database too.
    use sqlx::Connection;
    let refused = if is_postgres() {
        let mut c = sqlx::PgConnection::connect(&owner.db_url).await.unwrap();
        sqlx::query("update audit_events set action = 'x'")
            .execute(&mut c)
            .await
            .is_err()
    } else {
        let mut c = sqlx::SqliteConnection::connect(&owner.db_url)
            .await
            .unwrap();
        sqlx::query("update audit_events set action = 'x'")
            .execute(&mut c)
            .await
            .is_err()
    };
    assert!(refused, "audit rows cannot be updated");
}

/// A database made by migrations 0001-0012, with accounts, keys, secrets and usage in it:
/// after 0013 nothing is lost and each account owns its own workspace.
#[tokio::test]
async fn migration_makes_each_account_the_owner_of_its_workspace() {
    use sqlx::Connection;
    use std::borrow::Cow;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let setup = [
        "insert into accounts (email, password_hash, balance, created_at, email_verified_at) values ('a@example.com', 'x', 5000000, 1, 1)",
        "insert into accounts (email, password_hash, balance, created_at, email_verified_at) values ('b@example.com', 'y', 7, 2, 2)",
        "insert into api_keys (account_id, name, token_hash, token_prefix, token_last4, created_at, public_id) \
         values (1, 'prod', 'h1', 'lr-sk-aaaa', 'aaaa', 0, 'key_a')",
        "insert into api_keys (account_id, name, token_hash, token_prefix, token_last4, created_at, public_id) \
         values (2, 'dev', 'h2', 'lr-sk-bbbb', 'bbbb', 0, 'key_b')",
        "insert into key_secrets (key_id, token_hash, token_prefix, token_last4, created_at) values (1, 'h1', 'lr-sk-aaaa', 'aaaa', 0)",
        "insert into usage (generation_id, account_id, key_id, key_name, requested_model, status, http_status, latency_ms, started_at, completed_at, cost) \
         values ('gen-1', 1, 1, 'prod', 'm', 'ok', 200, 5, 10, 20, 42)",
    ];
    macro_rules! run {
        ($conn:ty, $migrator:expr, $opts:expr) => {{
            let mut c = <$conn>::connect_with(&$opts).await.unwrap();
            let mut m = $migrator;
            m.migrations = Cow::Owned(m.migrations[..12].to_vec());
            m.run(&mut c).await.unwrap();
            for sql in setup {
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
        }};
    }
    if is_postgres() {
        let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        run!(
            sqlx::PgConnection,
            sqlx::migrate!("./migrations/postgres"),
            opts
        );
    } else {
        let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        run!(
            sqlx::SqliteConnection,
            sqlx::migrate!("./migrations/sqlite"),
            opts
        );
    }
    let store = lowrouter::store::Store::connect(&url).await.unwrap();
    use lowrouter::domain::team::{Role, UserId, WorkspaceId};
    for id in [1, 2] {
        assert_eq!(
            store.role_of(WorkspaceId(id), UserId(id)).await.unwrap(),
            Some(Role::Owner)
        );
        let other = 3 - id;
        assert_eq!(
            store.role_of(WorkspaceId(id), UserId(other)).await.unwrap(),
            None
        );
    }
    use lowrouter::domain::Credits;
    let a = store.account(WorkspaceId(1)).await.unwrap();
    assert_eq!(
        (a.balance, a.name.as_str()),
        (Credits::from_micros(5_000_000), "a@example.com")
    );
    let b = store.account(WorkspaceId(2)).await.unwrap();
    assert_eq!(b.balance, Credits::from_micros(7));
    let keys = store.list_keys(WorkspaceId(1)).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].created_by,
        Some(UserId(1)),
        "the one person made it"
    );
    assert_eq!(
        store.list_keys(WorkspaceId(2)).await.unwrap()[0].name,
        "dev"
    );
    let usage = store
        .list_usage(WorkspaceId(1), &Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].cost, Credits::from_micros(42));
    let (keys, _) = store.offboarding(WorkspaceId(1), UserId(1)).await.unwrap();
    assert_eq!(keys.len(), 1);
    store.close().await;
}

/// An invitee without an account follows the link: Sign up (email prefilled, the page says
/// what they are joining), and lands back on the invitation to accept; one with an account
/// logs in and lands there too. A wrong token carries nothing.
#[tokio::test]
async fn an_invitation_is_carried_through_sign_up_and_log_in_back_to_accept() {
    let app = spawn_app().await;
    let owner = app.signed_up().await;
    let email = format!("newcomer-{owner}");
    let path = invite(&app, &email, "developer").await;
    let token = path.trim_start_matches("/invitations/").to_owned();

    let p = spawn_clone(&app);
    let invitation = p.get_html(&path).await;
    assert!(invitation.contains(&format!("href=\"/signup?invitation={token}\"")));
    let signup = p.get_html(&format!("/signup?invitation={token}")).await;
    assert!(
        signup.contains(&format!("value=\"{email}\"")),
        "email prefilled"
    );
    assert!(signup.contains("You are invited to join") && signup.contains("as Developer"));
    assert!(signup.contains(&format!("name=\"invitation\" value=\"{token}\"")));
    let r = p
        .post_form(
            "/signup",
            &format!("/signup?invitation={token}"),
            &[
                ("email", email.clone()),
                ("password", crate::common::PASSWORD.into()),
                ("invitation", token.clone()),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        path.as_str(),
        "back to the invitation"
    );
    let r = p.post_form(&path, &path, &[]).await;
    assert_eq!(r.status(), 303, "accepted");
    assert!(p.get_html("/members").await.contains(&email));

    // An existing account: Log in from the invitation, back to it.
    let email2 = format!("existing-{owner}");
    let q = spawn_clone(&app);
    assert_eq!(q.signup(&email2).await.status(), 303);
    q.logout().await;
    let path2 = invite(&app, &email2, "viewer").await;
    let token2 = path2.trim_start_matches("/invitations/").to_owned();
    let r = q
        .post_form(
            "/login",
            &format!("/login?invitation={token2}"),
            &[
                ("email", email2.clone()),
                ("password", crate::common::PASSWORD.into()),
                ("invitation", token2.clone()),
            ],
        )
        .await;
    assert_eq!(r.headers()["location"], path2.as_str());

    // A token that is no open invitation is not carried.
    let x = spawn_clone(&app);
    let page = x.get_html("/signup?invitation=not-a-token").await;
    assert!(!page.contains("You are invited") && !page.contains("name=\"invitation\""));
}

/// A personal workspace is named after its owner's email; before inviting anyone, the
/// Members page says so and points to the rename, and after it the invitation shows the name.
#[tokio::test]
async fn an_owner_is_asked_to_name_a_workspace_named_after_an_email() {
    let app = spawn_app().await;
    let owner = app.signed_up().await;
    let members = app.get_html("/members").await;
    assert!(
        members.contains("named after your email address"),
        "{members}"
    );
    let r = app
        .post_form(
            "/workspace/settings",
            "/workspace/settings",
            &[("name", "Platform team".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert!(!app
        .get_html("/members")
        .await
        .contains("named after your email"));
    let path = invite(&app, &format!("new-{owner}"), "viewer").await;
    let page = crate::helpers::spawn_clone(&app).get_html(&path).await;
    assert!(page.contains("Join “Platform team”"), "{page}");
}
