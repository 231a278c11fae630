//! Teams in a real browser, the "Done when" of issue 18: an owner invites a developer and a
//! viewer; the developer creates a key; the viewer can change nothing (no buttons, and the
//! POSTs are refused); the owner removes the developer, whose open session stops reaching
//! the workspace at once; the offboarding view lists the developer's key; Roll all; the
//! audit log shows each step with the right actor.

use super::*;

/// Signs up as `email` in this browser.
async fn sign_up_as(b: &Browser, email: &str) {
    b.goto("/signup").await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click_text("Create account").await;
    b.wait_path("/keys").await;
}

/// On the Members page: invites `email` as `role`; the one-time link's path.
async fn invite(b: &Browser, email: &str, role: &str) -> String {
    b.goto("/members").await;
    b.fill("#invite-email", email).await;
    b.find("#invite-role")
        .await
        .select_by_value(role)
        .await
        .unwrap();
    b.click_text("Create invitation").await;
    let link = b
        .find("#invite-link")
        .await
        .prop("value")
        .await
        .unwrap()
        .expect("the link is shown");
    link[link.find("/invitations/").unwrap()..].to_owned()
}

async fn accept(b: &Browser, path: &str) {
    b.goto(path).await;
    b.click_text("Accept and join").await;
    b.wait_path("/keys").await;
}

/// Submits a hand-made POST form from the Keys page in this browser (its cookies, the
/// page's CSRF token), as a person crafting the request would; the answer page's heading.
/// (The CSP allows no `fetch`, and forms only to this origin: a form it is.)
async fn forged_post(b: &Browser, path: &str) -> String {
    b.goto("/keys").await;
    let script = "const [url] = arguments; \
        const f = document.createElement('form'); f.method = 'post'; f.action = url; \
        const c = document.querySelector('input[name=csrf_token]').cloneNode(); f.appendChild(c); \
        const n = document.createElement('input'); n.name = 'name'; n.value = 'x'; f.appendChild(n); \
        document.body.appendChild(f); f.submit();";
    b.client.execute(script, vec![json!(path)]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h1 = b.h1().await;
        if h1 != "API keys" {
            return h1;
        }
        assert!(Instant::now() < deadline, "POST {path} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The audit table's rows as text, one string per row.
async fn audit_rows(b: &Browser) -> Vec<String> {
    b.goto("/audit").await;
    let mut rows = Vec::new();
    for r in b
        .client
        .find_all(Locator::Css("table.audit tbody tr"))
        .await
        .unwrap()
    {
        rows.push(r.text().await.unwrap());
    }
    rows
}

#[tokio::test]
async fn owner_invites_developer_and_viewer_removes_the_developer_and_rolls_their_keys() {
    let Some(paths) = browser_paths() else { return };
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app().await;
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let (owner_email, dev_email, viewer_email) = (
        format!("owner{n}@example.com"),
        format!("dev{n}@example.com"),
        format!("viewer{n}@example.com"),
    );
    let owner = open_browser(&paths, &app.address, true).await;
    sign_up_as(&owner, &owner_email).await;
    let dev_link = invite(&owner, &dev_email, "developer").await;
    let viewer_link = invite(&owner, &viewer_email, "viewer").await;

    let dev = open_browser(&paths, &app.address, true).await;
    sign_up_as(&dev, &dev_email).await;
    accept(&dev, &dev_link).await;
    let current = dev
        .find("#workspace-switch option[selected]")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        current,
        format!("{owner_email} (Developer)"),
        "the top bar says where"
    );
    let token = create_key(
        &dev,
        &NewKey {
            name: "dev-key",
            models: &[],
            region: "",
            daily_limit: "",
        },
    )
    .await;
    assert_eq!(app.chat(&token, "lowrouter/echo", "hi").await.status(), 200);

    let viewer = open_browser(&paths, &app.address, true).await;
    sign_up_as(&viewer, &viewer_email).await;
    accept(&viewer, &viewer_link).await;
    let html = viewer.source().await;
    assert!(html.contains("dev-key"), "viewers see every key");
    for action in ["/edit'", "/delete'", "/roll'", "/keys/new'"] {
        let sel = format!("a[href$='{}]", action.trim_end_matches('\''));
        let found = viewer.client.find_all(Locator::Css(&sel)).await.unwrap();
        assert!(found.is_empty(), "no {action} for a viewer");
    }
    let key_id = {
        dev.goto("/keys").await;
        let href = dev
            .find("a[href$='/edit']")
            .await
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        href.trim_start_matches("/keys/")
            .trim_end_matches("/edit")
            .to_owned()
    };
    viewer.goto(&format!("/keys/{key_id}/edit")).await;
    assert_eq!(viewer.h1().await, "Not allowed");
    for path in [
        "/keys".to_owned(),
        format!("/keys/{key_id}/edit"),
        format!("/keys/{key_id}/disable"),
        format!("/keys/{key_id}/delete"),
        format!("/keys/{key_id}/roll"),
        "/members/invite".to_owned(),
    ] {
        assert_eq!(
            forged_post(&viewer, &path).await,
            "Not allowed",
            "viewer POST {path}"
        );
    }
    viewer.close().await;

    // The owner removes the developer: their open session loses the workspace at once.
    owner.goto("/members").await;
    owner
        .click(&format!("button[aria-label='Remove {dev_email}']"))
        .await;
    owner.wait_h1(&format!("Offboarding {dev_email}")).await;
    assert!(owner.source().await.contains("dev-key"));
    // The offboarding page (Roll all's deadline choice): no overflow, no axe violation.
    let mut problems = Vec::new();
    shoot(&owner, "offboarding", true, &mut problems).await;
    assert!(problems.is_empty(), "layout problems: {problems:#?}");
    dev.goto("/keys").await;
    let html = dev.source().await;
    assert!(
        !html.contains("dev-key"),
        "the removed developer sees nothing of it"
    );
    assert!(html.contains("no longer a member"));
    dev.close().await;
    // Their key still works until rolled; Roll all shows the new secret once.
    assert_eq!(app.chat(&token, "lowrouter/echo", "hi").await.status(), 200);
    owner.click_text("Roll all").await;
    let new = owner
        .find("#token-1")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(new.starts_with("lr-sk-") && new != token);
    assert_eq!(app.chat(&new, "lowrouter/echo", "hi").await.status(), 200);

    // The audit log has each step, with the right actor.
    let rows = audit_rows(&owner).await;
    let has = |action: &str, actor: &str, target: &str| {
        rows.iter()
            .any(|r| r.contains(action) && r.contains(actor) && r.contains(target))
    };
    assert!(has("member.invited", &owner_email, &dev_email), "{rows:#?}");
    assert!(has("member.invited", &owner_email, &viewer_email));
    assert!(has("member.joined", &dev_email, &dev_email));
    assert!(has("member.joined", &viewer_email, &viewer_email));
    assert!(has("key.created", &dev_email, "dev-key"));
    assert!(has("member.removed", &owner_email, &dev_email));
    assert!(has("key.rolled", &owner_email, "dev-key"));
    owner.close().await;
}
