//! Refusals of a known key are in its usage history (issue 26): a deleted, disabled,
//! expired or rotated-out key, a rate limit. Within the key's budget of refusals each is a
//! row with its own reason, which the Usage page's status filter finds; beyond the budget
//! the client still gets its 401, and nothing more is written. The Usage page is read
//! before the database: a dashboard read waits for every answered request's row.

use crate::helpers::{spawn_app, TestApp};

/// The rows of the key `name` with `error_code` (the status filter's reason).
async fn rows_with(app: &TestApp, key_id: i64, code: &str) -> i64 {
    app.scalar_i64(&format!(
        "select count(*) from usage where key_id = {key_id} and error_code = '{code}'"
    ))
    .await
}

/// The Usage page filtered by `code` lists `n` rows, each saying `reason`.
async fn usage_page_lists(app: &TestApp, code: &str, reason: &str, n: usize) {
    let page = app.get_html(&format!("/usage?status={code}")).await;
    assert!(
        page.contains(&format!("<option value=\"{code}\" selected")),
        "the filter offers {code}"
    );
    assert_eq!(
        page.matches(&format!("· {reason}")).count(),
        n,
        "{code}: {page}"
    );
}

async fn status_of(app: &TestApp, token: &str) -> u16 {
    app.echo(token, "hi").await.status().as_u16()
}

#[tokio::test]
async fn refusals_of_dead_keys_and_rate_limits_are_in_the_keys_history() {
    let app = spawn_app().await;
    app.signed_up().await;

    // Disabled, then enabled again.
    let token = app.create_key("svc", &[]).await;
    let id = app.key_id("svc").await;
    let r = app
        .post_form(&format!("/keys/{id}/disable"), "/keys", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(status_of(&app, &token).await, 401);
    usage_page_lists(&app, "key_disabled", "Key disabled", 1).await;
    assert_eq!(rows_with(&app, id, "key_disabled").await, 1);
    app.post_form(&format!("/keys/{id}/enable"), "/keys", &[])
        .await;

    // Expired.
    app.execute_sql(&format!(
        "update api_keys set expires_at = 1000 where id = {id}"
    ))
    .await;
    assert_eq!(status_of(&app, &token).await, 401);
    usage_page_lists(&app, "key_expired", "Key expired", 1).await;
    assert_eq!(rows_with(&app, id, "key_expired").await, 1);
    app.execute_sql(&format!(
        "update api_keys set expires_at = null where id = {id}"
    ))
    .await;

    // A secret rolled out and retired.
    let path = format!("/keys/{id}/roll");
    let r = app
        .post_form(&path, &path, &[("retire", "now".to_owned())])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(status_of(&app, &token).await, 401);
    usage_page_lists(&app, "secret_retired", "Secret retired after a Roll", 1).await;
    assert_eq!(rows_with(&app, id, "secret_retired").await, 1);
    let token = crate::common::token_of(&r.text().await.unwrap()).unwrap();

    // Deleted.
    app.post_form(&format!("/keys/{id}/delete"), "/keys", &[])
        .await;
    assert_eq!(status_of(&app, &token).await, 401);
    usage_page_lists(&app, "key_revoked", "Key deleted", 1).await;
    assert_eq!(rows_with(&app, id, "key_revoked").await, 1);

    // A per-minute rate limit.
    let limited = app.create_key("limited", &[("rpm_limit", "1")]).await;
    let lid = app.key_id("limited").await;
    assert_eq!(status_of(&app, &limited).await, 200);
    assert_eq!(status_of(&app, &limited).await, 429);
    usage_page_lists(
        &app,
        "rate_limit_exceeded",
        "Rate limit (per minute or in flight)",
        1,
    )
    .await;
    assert_eq!(rows_with(&app, lid, "rate_limit_exceeded").await, 1);

    // The balance of a key that no longer works is not told to whoever holds it.
    let r = app.echo(&token, "hi").await;
    assert!(r.headers().get("x-credit-balance").is_none());
}

#[tokio::test]
async fn a_dead_key_hammered_writes_a_bounded_number_of_rows_and_keeps_answering_401() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("gone", &[]).await;
    let id = app.key_id("gone").await;
    app.post_form(&format!("/keys/{id}/delete"), "/keys", &[])
        .await;
    let burst = lowrouter::gateway::refusals::KEY_BURST as usize;
    for _ in 0..burst + 40 {
        assert_eq!(
            status_of(&app, &token).await,
            401,
            "never a 429 for a dead key's own budget"
        );
    }
    // The dashboard's reads wait for every answered request's row (SQLite's journal).
    app.get_html("/usage").await;
    let rows = rows_with(&app, id, "key_revoked").await;
    assert!(
        (burst as i64..=burst as i64 + 2).contains(&rows),
        "{rows} rows for {} refusals: the key's budget bounds them",
        burst + 40
    );
}

#[tokio::test]
async fn a_key_shows_its_last_success_and_its_last_refusal_apart_and_a_blocking_limit() {
    let app = spawn_app().await;
    app.signed_up().await;
    // A limit below any request's hold: every request is refused though nothing was spent.
    let token = app
        .create_key("tight", &[("daily_limit", "0.000001")])
        .await;
    let id = app.key_id("tight").await;
    assert_eq!(status_of(&app, &token).await, 429);

    let keys = app.get_html("/keys").await;
    let row = &keys[keys.find(">tight</a>").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains(&format!(
            "<a class=\"badge bad wraps\" href=\"/keys/{id}/edit\" title=\"Raise or remove the limit\">Limit reached: refused until 00:00 UTC</a>"
        )),
        "a key refusing for its limit says so, linking to Edit: {row}"
    );
    assert!(row.contains(">Never<"), "a refusal is not a use: {row}");
    assert!(row.contains("Last refused"), "{row}");
    assert!(row.contains("429 · Daily limit reached"), "{row}");
    assert!(
        !row.contains("Model <code>"),
        "no model of a request never served: {row}"
    );
    let page = app.get_html(&format!("/keys/{id}")).await;
    assert!(
        page.contains("Last refused or failed") && page.contains("Limit reached: refused until")
    );

    // The refused request's page explains it and leads to the fix; Usage finds it by id.
    let generation = crate::common::between(row, "href=\"/usage/", "\"")
        .unwrap()
        .to_owned();
    let found = app.get(&format!("/usage?generation={generation}")).await;
    assert_eq!(found.status(), 303);
    assert_eq!(
        found.headers()["location"],
        format!("/usage/{generation}").as_str()
    );
    let detail = app.get_html(&format!("/usage/{generation}")).await;
    assert!(
        detail.contains("What this means") && detail.contains("worst-case cost"),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("href=\"/keys/{id}/edit\">Edit this key")),
        "{detail}"
    );
    let missing = app.get("/usage?generation=gen-nothing-here").await;
    assert_eq!(missing.headers()["location"], "/usage");
    assert!(app
        .get_html("/usage")
        .await
        .contains("No request with that generation id"));

    // The API says the same: no last use, the last refusal with its code and record.
    let mk = crate::management::management_key(&app, "m", true).await;
    let (_, listed) =
        crate::management::call(&app, reqwest::Method::GET, "/api/v1/keys", &mk, None).await;
    let k = &listed["data"][0];
    assert_eq!(k["name"], "tight");
    assert!(k["last_used_at"].is_null(), "{k}");
    assert_eq!(k["last_refusal"]["status"], 429, "{k}");
    assert_eq!(k["last_refusal"]["code"], "daily_limit_reached", "{k}");
    assert!(k["last_refusal"]["generation_id"]
        .as_str()
        .unwrap()
        .starts_with("gen-"));

    // A success afterwards is the last use, with its model; the refusal stays apart.
    let ok = app.create_key("fine", &[]).await;
    assert_eq!(status_of(&app, &ok).await, 200);
    let keys = app.get_html("/keys").await;
    let row = &keys[keys.find(">fine</a>").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("Model <code>lowrouter/echo</code>") && !row.contains("Last refused"),
        "{row}"
    );
}
