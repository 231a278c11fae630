//! Isolation: every route that takes a key id or a generation id.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Target {
    Key,
    Generation,
    /// An API key by public id, through the management API (with a management key).
    ApiKey,
    /// A management key by public id (the Management keys page).
    ManagementKey,
    /// A webhook endpoint's id (the Alerts settings page).
    Webhook,
    /// A person's id as a member of the current workspace (the Members page).
    Member,
    /// A pending invitation's id (the Members page).
    Invitation,
}

pub(crate) struct Case {
    method: &'static str,
    pattern: &'static str,
    target: Target,
    /// What the owner gets (proves the id is right and the 404 is isolation, not a typo).
    owner_status: u16,
}

/// Every route with an id in its path. The owner's checks run in this order, so the
/// destructive one is last.
pub(crate) const ISOLATION_TABLE: &[Case] = &[
    Case {
        method: "GET",
        pattern: "/keys/{id}/edit",
        target: Target::Key,
        owner_status: 200,
    },
    Case {
        method: "GET",
        pattern: "/keys/{id}/delete",
        target: Target::Key,
        owner_status: 200,
    },
    Case {
        method: "GET",
        pattern: "/usage/{generation_id}",
        target: Target::Generation,
        owner_status: 200,
    },
    Case {
        method: "GET",
        pattern: "/api/v1/generation/{id}",
        target: Target::Generation,
        owner_status: 200,
    },
    Case {
        method: "GET",
        pattern: "/keys/{id}",
        target: Target::Key,
        owner_status: 200,
    },
    Case {
        method: "GET",
        pattern: "/keys/{id}/roll",
        target: Target::Key,
        owner_status: 200,
    },
    // Rolls (the reveal page), then extends and retires the previous secret: the owner's
    // token stops working here, and no later case uses it.
    Case {
        method: "POST",
        pattern: "/keys/{id}/roll",
        target: Target::Key,
        owner_status: 200,
    },
    Case {
        method: "POST",
        pattern: "/keys/{id}/extend",
        target: Target::Key,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/keys/{id}/retire",
        target: Target::Key,
        owner_status: 303,
    },
    Case {
        method: "GET",
        pattern: "/api/v1/keys/{id}",
        target: Target::ApiKey,
        owner_status: 200,
    },
    Case {
        method: "PATCH",
        pattern: "/api/v1/keys/{id}",
        target: Target::ApiKey,
        owner_status: 200,
    },
    Case {
        method: "POST",
        pattern: "/api/v1/keys/{id}/roll",
        target: Target::ApiKey,
        owner_status: 200,
    },
    Case {
        method: "DELETE",
        pattern: "/api/v1/keys/{id}",
        target: Target::ApiKey,
        owner_status: 200,
    },
    // Rolls the owner's management key (no later case uses its token), then revokes it.
    Case {
        method: "POST",
        pattern: "/management-keys/{id}/roll",
        target: Target::ManagementKey,
        owner_status: 200,
    },
    Case {
        method: "POST",
        pattern: "/management-keys/{id}/revoke",
        target: Target::ManagementKey,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/alerts/keys/{id}/auto-disable",
        target: Target::Key,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/alerts/webhooks/{id}/test",
        target: Target::Webhook,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/alerts/webhooks/{id}/roll",
        target: Target::Webhook,
        owner_status: 200,
    },
    Case {
        method: "POST",
        pattern: "/alerts/webhooks/{id}/delete",
        target: Target::Webhook,
        owner_status: 303,
    },
    Case {
        method: "GET",
        pattern: "/members/{user}/offboarding",
        target: Target::Member,
        owner_status: 200,
    },
    Case {
        method: "POST",
        pattern: "/members/{user}/role",
        target: Target::Member,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/members/{user}/remove",
        target: Target::Member,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/invitations/{id}/revoke",
        target: Target::Invitation,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/keys/{id}/edit",
        target: Target::Key,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/keys/{id}/disable",
        target: Target::Key,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/keys/{id}/enable",
        target: Target::Key,
        owner_status: 303,
    },
    Case {
        method: "POST",
        pattern: "/keys/{id}/delete",
        target: Target::Key,
        owner_status: 303,
    },
];

/// Routes with a path parameter that is not an account's id. An invitation's `{token}` is
/// the one-time credential itself (256 bits, stored hashed): holding it is what entitles.
/// Roll all and Hand over are covered by their offboarding page's case (same lookup of the
/// member).
pub(crate) const NOT_ID_ROUTES: &[(&str, &str)] = &[
    ("GET", "/static/{file}"),
    ("GET", "/api/v1/models/{id:.+}"),
    ("GET", "/invitations/{token}"),
    ("POST", "/invitations/{token}"),
    ("POST", "/members/{user}/offboarding/roll-all"),
    ("POST", "/members/{user}/offboarding/hand-over"),
];

/// `(METHOD, path)` of every `.route("…", web::method()…)` in a routes file, prefixed with
/// the file's `web::scope("…")` if it has one.
pub(crate) fn routes_in(src: &str) -> Vec<(String, String)> {
    // The dashboard's table (`dashboard_routes!`): `get "/path" => handler, rule;`.
    let table = src.lines().filter_map(|line| {
        let line = line.trim();
        let (method, rest) = line.split_once(' ')?;
        if !matches!(method, "get" | "post") || !rest.starts_with('"') || !rest.contains("=>") {
            return None;
        }
        let path = rest[1..].split('"').next()?;
        Some((method.to_uppercase(), path.to_owned()))
    });
    let mut found: Vec<(String, String)> = table.collect();
    let scope = between(src, "web::scope(\"", "\"").unwrap_or("");
    // `.route(` then the path's literal, on the same line or (as rustfmt wraps long ones)
    // the next.
    found.extend(
        src.split(".route(")
            .skip(1)
            // The table's own registration: `cfg.route($path, …)`.
            .filter(|piece| !piece.trim_start().starts_with('$'))
            .map(|piece| {
                let piece = piece
                    .trim_start()
                    .strip_prefix('"')
                    .expect("route path is a literal");
                let path = piece.split('"').next().unwrap();
                let method = between(piece, "web::", "()").expect("route has a method guard");
                (method.to_uppercase(), format!("{scope}{path}"))
            }),
    );
    found
}

/// The routes as the source declares them; the table must cover every one with an id.
#[test]
fn isolation_table_covers_every_route_with_an_id() {
    let web = include_str!("../../src/web/mod.rs");
    let gateway = include_str!("../../src/gateway/mod.rs");
    let health = include_str!("../../src/health.rs");
    let metrics = include_str!("../../src/metrics.rs");
    // Routes registered anywhere else would escape this check: the wiring adds none.
    let startup = include_str!("../../src/startup.rs");
    for (name, src) in [
        ("src/startup.rs", startup),
        ("src/web/mod.rs", web),
        ("src/gateway/mod.rs", gateway),
        ("src/health.rs", health),
        ("src/metrics.rs", metrics),
    ] {
        assert!(
            !src.contains("web::resource(") && !src.contains("#[get(") && !src.contains("#[post("),
            "{name} registers routes in a way this test does not parse; extend routes_in()"
        );
    }
    assert!(
        !startup.contains(".route("),
        "src/startup.rs registers routes"
    );
    let all: Vec<_> = routes_in(web)
        .into_iter()
        .chain(routes_in(gateway))
        .chain(routes_in(health))
        .chain(routes_in(metrics))
        .collect();
    assert!(all.len() >= 20, "route parsing found too little: {all:?}");
    let with_params: BTreeSet<(String, String)> =
        all.into_iter().filter(|(_, p)| p.contains('{')).collect();
    let covered: BTreeSet<(String, String)> = ISOLATION_TABLE
        .iter()
        .map(|c| (c.method.to_owned(), c.pattern.to_owned()))
        .chain(
            NOT_ID_ROUTES
                .iter()
                .map(|(m, p)| ((*m).to_owned(), (*p).to_owned())),
        )
        .collect();
    let missing: Vec<_> = with_params.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes taking an id that the isolation table does not cover: {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&with_params).collect();
    assert!(
        stale.is_empty(),
        "table entries for routes that no longer exist: {stale:?}"
    );
}

/// A management key of `who`'s account, made on the Management keys page.
pub(crate) async fn management_key(who: &Browser) -> String {
    let r = who
        .post_form(
            "/management-keys",
            "/management-keys",
            &[("name", "isolation")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    between(&html, "value=\"lr-mk-", "\"")
        .map(|t| format!("lr-mk-{t}"))
        .expect("reveal shows the management key")
}

/// Everything of account `id` that a foreign request could change.
pub(crate) async fn account_state(db: &Db, id: i64) -> Vec<String> {
    let mut s = db
        .texts(&format!(
            "select cast(id as text) || '|' || name || '|' || status || '|' || models || '|' || \
             coalesce(region, '-') || '|' || coalesce(cast(daily_limit as text), '-') || '|' || \
             coalesce(cast(monthly_limit as text), '-') || '|' || coalesce(cast(expires_at as text), '-') || '|' || \
             coalesce(cast(revoked_at as text), '-') || '|' || token_hash \
             from api_keys where account_id = {id} order by id"
        ))
        .await;
    s.extend(
        db.texts(&format!(
            "select cast(balance as text) || '|' || cast(reserved as text) || '|' || email || '|' || password_hash \
             from accounts where id = {id}"
        ))
        .await,
    );
    s.extend(
        db.texts(&format!(
            "select public_id || '|' || coalesce(cast(revoked_at as text), '-') || '|' || token_hash \
             from management_keys where account_id = {id} order by id"
        ))
        .await,
    );
    s.extend(
        db.texts(&format!(
            "select generation_id || '|' || key_name || '|' || cast(cost as text) from usage \
             where account_id = {id} order by id"
        ))
        .await,
    );
    // Teams and alerts: members and their roles, invitations, webhook endpoints and what
    // they were sent.
    for sql in [
        format!("select cast(user_id as text) || '|' || role from workspace_members where account_id = {id} order by user_id"),
        format!("select cast(id as text) || '|' || coalesce(cast(revoked_at as text), '-') from invitations where account_id = {id} order by id"),
        format!("select cast(id as text) || '|' || url || '|' || coalesce(cast(deleted_at as text), '-') from webhook_endpoints where account_id = {id} order by id"),
        format!("select cast(count(*) as text) from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id where e.account_id = {id}"),
    ] {
        s.extend(db.texts(&sql).await);
    }
    s
}

/// One request of the table: as `who` (its session and a valid CSRF token of its own, so
/// only the ownership check can refuse it), with `bearer` (an API key) for the gateway's
/// routes and `manager` (a management key of its own) for the management API's.
pub(crate) async fn send_case(
    server: &Server,
    who: &Browser,
    (bearer, manager): (&str, &str),
    c: &Case,
    id: &str,
) -> (u16, String) {
    let url = server.url(
        &c.pattern
            .replace("{id}", id)
            .replace("{generation_id}", id)
            .replace("{user}", id),
    );
    let req = match c.method {
        "GET" => who.client.get(&url),
        "POST" if c.pattern.starts_with("/api/v1/") => {
            who.client.post(&url).json(&serde_json::json!({}))
        }
        "POST" => {
            // The one-time form id of a page the person has open: forms that make
            // something take one (a request without is a repeat: "Already done").
            let page = who.get_html("/keys/new").await;
            let csrf = csrf_of(&page);
            let form_id = between(&page, "name=\"form_id\" value=\"", "\"")
                .unwrap_or_default()
                .to_owned();
            who.client.post(&url).form(&[
                ("csrf_token", csrf.as_str()),
                ("form_id", form_id.as_str()),
                // Past any "are you sure?" page (Disable, Retire now of a key in use).
                ("confirm", "1"),
                ("name", "pwned"),
                ("daily_limit", "99999"),
                ("models", "lowrouter/echo"),
                ("role", "viewer"),
            ])
        }
        "PATCH" => who.client.patch(&url).json(&serde_json::json!({
            "name": "pwned", "daily_limit": "99999", "models": ["lowrouter/echo"], "disabled": true
        })),
        "DELETE" => who.client.delete(&url),
        m => panic!("method {m}"),
    };
    let req = if c.pattern.starts_with("/api/v1/keys") {
        req.bearer_auth(manager)
    } else if c.pattern.starts_with("/api/") {
        req.bearer_auth(bearer)
    } else {
        req
    };
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_gets_404_on_every_id_route_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_database(dir.path()).await;
    // Webhook endpoints on loopback are allowed here: the endpoints below only need to exist.
    let server = Server::start(
        dir.path(),
        &db_url,
        "isolation",
        &[("LOWROUTER_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")],
    )
    .await;
    let db = Db(db_url);
    let api = api_client();

    // The owner: a live key with a generation, and a deleted key with one.
    let owner = Browser::new(&server);
    let owner_email = owner.signed_up().await;
    let owner_token = owner
        .create_key("victim", &[("daily_limit", "3.00"), ("region", "eu-west")])
        .await;
    let key_id = owner.key_id("victim").await;
    let r = echo(
        &api,
        &server.base,
        &owner_token,
        "owner's secret prompt",
        false,
    )
    .await
    .unwrap();
    assert!(r.complete);
    let generation = r.generation_id.unwrap();
    let old_token = owner.create_key("old", &[]).await;
    let old_id = owner.key_id("old").await;
    let r = echo(&api, &server.base, &old_token, "old", true)
        .await
        .unwrap();
    assert!(r.complete);
    let old_generation = r.generation_id.unwrap();
    assert_eq!(owner.delete_key(old_id).await.status(), 303);
    let owner_id = db.account_id(&owner_email).await;
    // A key for the management API's cases (the dashboard's Delete takes `victim`), the
    // revoked one by its public id, and a management key.
    owner.create_key("api-victim", &[]).await;
    let public_id = |name: &'static str| {
        let db = &db;
        async move {
            db.texts(&format!(
                "select public_id from api_keys where account_id = {owner_id} and name = '{name}'"
            ))
            .await
            .remove(0)
        }
    };
    let api_key_id = public_id("api-victim").await;
    let old_public_id = public_id("old").await;
    let owner_manager = management_key(&owner).await;
    let owner_mk_id = db
        .texts(&format!(
            "select public_id from management_keys where account_id = {owner_id}"
        ))
        .await
        .remove(0);

    // A webhook endpoint, a second member (invited as a developer, joined) and a pending
    // invitation of the owner's workspace.
    let r = owner
        .post_form(
            "/alerts/webhooks",
            "/alerts/settings",
            &[
                ("url", "http://127.0.0.1:9/hook"),
                ("events", "limit.threshold"),
            ],
        )
        .await;
    assert!(
        r.status().is_success() || r.status() == 303,
        "endpoint saved"
    );
    let webhook_id = db
        .i64(&format!(
            "select min(id) from webhook_endpoints where account_id = {owner_id}"
        ))
        .await
        .to_string();
    let member = Browser::new(&server);
    let member_email = member.signed_up().await;
    let invite = owner
        .post_form(
            "/members/invite",
            "/members",
            &[("email", member_email.as_str()), ("role", "developer")],
        )
        .await
        .text()
        .await
        .unwrap();
    let link = between(&invite, "/invitations/", "\"")
        .map(|t| format!("/invitations/{t}"))
        .expect("the invitation link is shown to the inviter");
    let r = member.post_form(&link, &link, &[]).await;
    assert!(
        r.status().is_success() || r.status() == 303,
        "invitation accepted"
    );
    let member_id = db.account_id(&member_email).await.to_string();
    owner
        .post_form(
            "/members/invite",
            "/members",
            &[("email", "pending@example.com"), ("role", "viewer")],
        )
        .await;
    let invitation_id = db
        .i64(&format!(
            "select min(id) from invitations where account_id = {owner_id} and accepted_at is null"
        ))
        .await
        .to_string();

    // The intruder: signed in, with keys of its own and valid CSRF tokens.
    let intruder = Browser::new(&server);
    intruder.signed_up().await;
    let intruder_token = intruder.create_key("mine", &[]).await;
    let intruder_manager = management_key(&intruder).await;
    let intruder_bearers = (intruder_token.as_str(), intruder_manager.as_str());
    let owner_bearers = (owner_token.as_str(), owner_manager.as_str());

    let before = account_state(&db, owner_id).await;
    for c in ISOLATION_TABLE {
        let (foreign, missing) = match c.target {
            Target::Key => (
                vec![key_id.to_string(), old_id.to_string()],
                "987654321".to_owned(),
            ),
            Target::Generation => (
                vec![generation.clone(), old_generation.clone()],
                "gen-AAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            ),
            Target::ApiKey => (
                vec![api_key_id.clone(), old_public_id.clone()],
                "key_AAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            ),
            Target::ManagementKey => (
                vec![owner_mk_id.clone()],
                "mk_AAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
            ),
            Target::Webhook => (vec![webhook_id.clone()], "987654321".to_owned()),
            // The owner is a member of their own workspace too.
            Target::Member => (
                vec![member_id.clone(), owner_id.to_string()],
                "987654321".to_owned(),
            ),
            Target::Invitation => (vec![invitation_id.clone()], "987654321".to_owned()),
        };
        let (missing_status, missing_body) =
            send_case(&server, &intruder, intruder_bearers, c, &missing).await;
        assert_eq!(
            missing_status, 404,
            "{} {} (no such id)",
            c.method, c.pattern
        );
        for id in &foreign {
            let (status, body) = send_case(&server, &intruder, intruder_bearers, c, id).await;
            assert_eq!(
                status, 404,
                "{} {} with another account's id {id}",
                c.method, c.pattern
            );
            // Indistinguishable from an id that does not exist: no existence oracle.
            assert_eq!(
                body, missing_body,
                "{} {}: foreign and missing differ",
                c.method, c.pattern
            );
            assert!(!body.contains("victim") && !body.contains("owner's secret"));
        }
    }
    assert_eq!(
        account_state(&db, owner_id).await,
        before,
        "a foreign request changed the owner's account"
    );
    // The owner's key still works: nothing was disabled or deleted.
    assert!(
        echo(&api, &server.base, &owner_token, "still mine", false)
            .await
            .unwrap()
            .complete
    );

    // Positive control: the same requests by the owner do reach the resource.
    for c in ISOLATION_TABLE {
        let id = match c.target {
            Target::Key => key_id.to_string(),
            Target::Generation => generation.clone(),
            Target::ApiKey => api_key_id.clone(),
            Target::ManagementKey => owner_mk_id.clone(),
            Target::Webhook => webhook_id.clone(),
            Target::Member => member_id.clone(),
            Target::Invitation => invitation_id.clone(),
        };
        let (status, _) = send_case(&server, &owner, owner_bearers, c, &id).await;
        assert_eq!(status, c.owner_status, "owner: {} {}", c.method, c.pattern);
    }
    let revoked = db
        .i64(&format!(
            "select count(*) from api_keys where id = {key_id} and status = 'revoked'"
        ))
        .await;
    assert_eq!(revoked, 1, "the owner's Delete went through");
}
