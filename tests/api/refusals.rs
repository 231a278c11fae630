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
