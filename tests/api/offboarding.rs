//! Offboarding with nothing around it: keys made or rolled through a member's management
//! key are theirs, a management key acts with its owner's current role and dies with their
//! membership (unless handed over), and Roll all stops the old secrets at a fixed time.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::management::{call, management_key};
use crate::teams::{member_id, team};

/// A key's public id, by name, through the management API.
async fn public_id(app: &TestApp, mk: &str, name: &str) -> String {
    let (status, page) = call(app, Method::GET, "/api/v1/keys?limit=100", mk, None).await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("{name} listed"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn set_role(owner: &TestApp, user: i64, role: &str) {
    let r = owner
        .post_form(
            &format!("/members/{user}/role"),
            "/members",
            &[("role", role.into())],
        )
        .await;
    assert_eq!(r.status(), 303, "{role}");
}

#[tokio::test]
async fn what_a_management_key_made_is_offboarded_with_its_owner() {
    let t = team().await;
    let owner = &t.app;
    let admin = &t.members[2];
    let admin_id = member_id(owner, &t.emails[2]).await;
    owner.create_key("owners-key", &[]).await;
    let mk = management_key(admin, "admin-ci", false).await;

    // Through the admin's management key: one key made, one of the owner's rolled.
    let (status, made) = call(
        admin,
        Method::POST,
        "/api/v1/keys",
        &mk,
        Some(json!({"name": "made-by-mk"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let made_token = made["token"].as_str().unwrap().to_owned();
    let owners = public_id(admin, &mk, "owners-key").await;
    let (status, rolled) = call(
        admin,
        Method::POST,
        &format!("/api/v1/keys/{owners}/roll"),
        &mk,
        Some(json!({"retire_previous": "now"})),
    )
    .await;
    assert_eq!(status, 200, "{rolled}");
    let rolled_token = rolled["token"].as_str().unwrap().to_owned();
    for token in [&made_token, &rolled_token] {
        assert_eq!(owner.echo(token, "hi").await.status(), 200);
    }

    let view = format!("/members/{admin_id}/offboarding");
    let html = owner.get_html(&view).await;
    assert!(html.contains(">made-by-mk</a>"), "{html}");
    assert!(html.contains(">owners-key</a>"), "the key they rolled");
    assert!(html.contains("admin-ci"), "the management key they own");

    // Removal revokes their management key at once.
    let r = owner
        .post_form(&format!("/members/{admin_id}/remove"), "/members", &[])
        .await;
    assert_eq!(r.status(), 303);
    let (status, body) = call(admin, Method::GET, "/api/v1/keys", &mk, None).await;
    assert_eq!(status, 401, "{body}");
    let audit = owner.get_html("/audit?action=management_key.deleted").await;
    assert!(audit.contains("its owner left the workspace"), "{audit}");

    // Roll all: a deadline that is not one is refused and rolls nothing.
    let bad = owner
        .post_form(
            &format!("{view}/roll-all"),
            &view,
            &[("retire", "deadline".into()), ("hours", "0".into())],
        )
        .await;
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .contains("whole number of hours from 1 to 168"));
    assert_eq!(owner.echo(&made_token, "hi").await.status(), 200);
    // "Now": the ex-admin's copies fail on the next request, the new secrets work.
    let r = owner
        .post_form(
            &format!("{view}/roll-all"),
            &view,
            &[("retire", "now".into())],
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let fresh: Vec<&str> = html
        .match_indices("value=\"lr-sk-")
        .map(|(i, _)| html[i + 7..].split('"').next().unwrap())
        .collect();
    assert_eq!(fresh.len(), 2, "both API keys rolled: {html}");
    for token in [&made_token, &rolled_token] {
        assert_eq!(owner.echo(token, "hi").await.status(), 401);
    }
    for token in fresh {
        assert_eq!(owner.echo(token, "hi").await.status(), 200);
    }
}

#[tokio::test]
async fn a_management_key_acts_with_its_owners_current_role() {
    let t = team().await;
    let owner = &t.app;
    let admin = &t.members[2];
    let admin_id = member_id(owner, &t.emails[2]).await;
    owner.create_key("owners-key", &[]).await;
    let mk = management_key(admin, "admin-ci", false).await;
    let owners = public_id(admin, &mk, "owners-key").await;
    let create = |name: &'static str| {
        call(
            admin,
            Method::POST,
            "/api/v1/keys",
            &mk,
            Some(json!({"name": name})),
        )
    };

    // Demoted to viewer: a read-write key made as an admin now only reads.
    set_role(owner, admin_id, "viewer").await;
    let page = owner.get_html("/management-keys").await;
    assert!(
        page.contains(&format!("Acts for {} (viewer)", t.emails[2])),
        "the page says whom, with what role: {page}"
    );
    let (status, body) = create("as-viewer").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_role");
    assert_eq!(
        call(admin, Method::GET, "/api/v1/keys", &mk, None).await.0,
        200
    );
    let (status, _) = call(admin, Method::GET, "/api/v1/audit", &mk, None).await;
    assert_eq!(status, 403, "the audit log needs an admin");

    // A developer: makes keys and changes those, not anyone else's.
    set_role(owner, admin_id, "developer").await;
    let (status, made) = create("as-developer").await;
    assert_eq!(status, 201, "{made}");
    let mine = made["data"]["id"].as_str().unwrap().to_owned();
    let rename = |id: String, to: &'static str| {
        let mk = mk.clone();
        async move {
            call(
                admin,
                Method::PATCH,
                &format!("/api/v1/keys/{id}"),
                &mk,
                Some(json!({"name": to})),
            )
            .await
        }
    };
    let (status, body) = rename(owners.clone(), "taken-over").await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(
        admin,
        Method::DELETE,
        &format!("/api/v1/keys/{owners}"),
        &mk,
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(rename(mine, "mine-renamed").await.0, 200);

    // Handed over to the owner before removal, it keeps working: now for the owner.
    set_role(owner, admin_id, "admin").await;
    let view = format!("/members/{admin_id}/offboarding");
    let html = owner.get_html(&view).await;
    let key = between(&html, "name=\"key\" value=\"", "\"")
        .unwrap()
        .to_owned();
    // The heirs offered: admins and owners, the owner here.
    let owner_id: i64 = between(&html, "<option value=\"", "\"")
        .unwrap()
        .parse()
        .unwrap();
    assert!(html.contains(&format!(">{}</option>", t.emails[3])));
    let viewer_id = member_id(owner, &t.emails[0]).await;
    let hand_over = |to: i64| {
        let (view, key) = (view.clone(), key.clone());
        async move {
            let fields = [("key", key), ("to", to.to_string())];
            let r = owner
                .post_form(&format!("{view}/hand-over"), &view, &fields)
                .await;
            r.status().as_u16()
        }
    };
    assert_eq!(hand_over(viewer_id).await, 400, "only an admin or owner");
    assert_eq!(hand_over(owner_id).await, 303);
    assert_eq!(hand_over(owner_id).await, 303, "a repeat changes nothing");
    assert!(owner
        .get_html(&view)
        .await
        .contains("no longer this member"));
    let r = owner
        .post_form(&format!("/members/{admin_id}/remove"), "/members", &[])
        .await;
    assert_eq!(r.status(), 303);
    let (status, body) = create("after-hand-over").await;
    assert_eq!(status, 201, "{body}");
    let page = owner.get_html("/management-keys").await;
    assert!(page.contains(&format!("Acts for {} (owner)", t.emails[3])));
    let audit: Value = call(
        admin,
        Method::GET,
        "/api/v1/audit?action=management_key.handed_over",
        &mk,
        None,
    )
    .await
    .1;
    assert_eq!(audit["data"][0]["details"]["to"], t.emails[3].as_str());
}

/// Hostile values on the offboarding forms and the audit cursor: clear refusals, nothing
/// changed, never a 500.
#[tokio::test]
async fn hostile_offboarding_values_are_refused_cleanly() {
    let t = team().await;
    let owner = &t.app;
    let admin = &t.members[2];
    let admin_id = member_id(owner, &t.emails[2]).await;
    let mk = management_key(admin, "admin-ci", false).await;
    let view = format!("/members/{admin_id}/offboarding");
    let huge = "9".repeat(10_000);
    for (retire, hours) in [
        ("deadline", huge.as_str()),
        ("deadline", "-5"),
        ("deadline", "1\u{0}"),
        ("deadline", "169"),
        ("soon\u{0}", "24"),
    ] {
        let r = owner
            .post_form(
                &format!("{view}/roll-all"),
                &view,
                &[("retire", retire.into()), ("hours", hours.into())],
            )
            .await;
        assert_eq!(
            r.status(),
            400,
            "{retire:?} {}",
            &hours[..hours.len().min(8)]
        );
    }
    for (key, to) in [
        ("mk_\u{0}".to_owned(), "1".to_owned()),
        ("x".repeat(10_000), huge.clone()),
        (String::new(), "-1".to_owned()),
    ] {
        let r = owner
            .post_form(
                &format!("{view}/hand-over"),
                &view,
                &[("key", key), ("to", to)],
            )
            .await;
        assert!(matches!(r.status().as_u16(), 303 | 400), "{}", r.status());
    }
    // Nothing changed: the key still acts for the admin, and works.
    assert_eq!(
        call(admin, Method::GET, "/api/v1/keys", &mk, None).await.0,
        200
    );
    assert!(owner
        .get_html("/management-keys")
        .await
        .contains(&format!("Acts for {} (admin)", t.emails[2])));
    for cursor in [huge.as_str(), "evt_%00%00", "evt_AAAAAAAAAAAAAAAAAAAAAA"] {
        let (status, body) = call(
            owner,
            Method::GET,
            &format!("/api/v1/audit?cursor={cursor}"),
            &mk,
            None,
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["param"], "cursor");
    }
}
