//! The outbox under a hostile or broken receiver (security issue, items 2 and 6): a slow,
//! flooded endpoint holds at most its own lane, never another workspace's alerts; a failing
//! one is paused by the circuit breaker and probed; "Send test event" has a budget; and
//! deleting an endpoint or a workspace stops its deliveries, even one in flight. Through
//! the dashboard and real receivers; both backends (the lanes across two processes on
//! PostgreSQL).

use std::time::{Duration, Instant};

use super::receiver::Receiver;
use super::{add_endpoint, fast_alerts};
use crate::helpers::{between, is_postgres, spawn_app_with, spawn_clone, spawn_peer_with, TestApp};

/// The id of the first endpoint on the settings page.
async fn first_endpoint(app: &TestApp) -> i64 {
    let page = app.get_html("/alerts/settings").await;
    between(&page, "action=\"/alerts/webhooks/", "/test\"")
        .expect("an endpoint is listed")
        .parse()
        .unwrap()
}

async fn send_test(app: &TestApp, endpoint: i64) -> reqwest::Response {
    app.post_form(
        &format!("/alerts/webhooks/{endpoint}/test"),
        "/alerts/settings",
        &[],
    )
    .await
}

/// Queues `n` `balance.low` events for `endpoint`, as a workspace whose alerts pile up
/// would (the form's test events have a budget, so a flood is planted in the database).
async fn plant_events(app: &TestApp, endpoint: i64, n: usize) {
    let account = app
        .scalar_i64(&format!(
            "select account_id from webhook_endpoints where id = {endpoint}"
        ))
        .await;
    let now = lowrouter::domain::time_util::now_ms();
    app.execute_sql(&format!(
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < {n}) \
         insert into alert_events (public_id, account_id, key_id, kind, dedupe, payload, created_at) \
         select 'evt_seed_{endpoint}_' || i, {account}, null, 'balance.low', 'seed:{endpoint}:' || i, \
         '{{\"type\": \"balance.low\", \"seed\": ' || i || '}}', {now} from n"
    ))
    .await;
    app.execute_sql(&format!(
        "insert into webhook_deliveries (endpoint_id, event_id, account_id, next_attempt_at, created_at) \
         select {endpoint}, id, {account}, {now}, {now} from alert_events where dedupe like 'seed:{endpoint}:%'"
    ))
    .await;
}

/// Another workspace (its own person) with an endpoint to `receiver` for test events: how
/// long its test event takes from the click to the receiver.
async fn other_workspace_delay(app: &TestApp, receiver: &Receiver) -> Duration {
    let other = spawn_clone(app);
    other.signed_up().await;
    add_endpoint(&other, &receiver.url, &["test"]).await;
    let endpoint = first_endpoint(&other).await;
    let body = other.form_body("/alerts/settings", &[]).await;
    let before = receiver.hits().len();
    let clicked = Instant::now();
    let r = other
        .post_body(&format!("/alerts/webhooks/{endpoint}/test"), &body)
        .await;
    assert_eq!(r.status(), 303);
    let hits = receiver
        .wait_for(Duration::from_secs(30), |h| h.len() > before)
        .await;
    hits[before].at - clicked
}

#[tokio::test]
async fn a_slow_flooded_endpoint_does_not_delay_another_workspaces_alerts() {
    let app = spawn_app_with(fast_alerts).await;
    let slow = Receiver::start_with(0, Duration::from_secs(3)).await;
    let fast = Receiver::start(0).await;
    app.signed_up().await;
    add_endpoint(&app, &slow.url, &["balance.low"]).await;
    let flooded = first_endpoint(&app).await;
    plant_events(&app, flooded, 300).await;
    // Its lane is busy: two requests waiting on 3 s answers, 298 rows behind them.
    slow.wait_for(Duration::from_secs(5), |h| h.len() >= 2)
        .await;
    let delay = other_workspace_delay(&app, &fast).await;
    assert!(delay < Duration::from_secs(2), "took {delay:?}");
    // One receiver never has more than two of its deliveries at once: two every 3 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(slow.most_at_once(), 2);
    let hits = slow.hits();
    let rounds = (hits[0].at.elapsed().as_secs_f64() / 3.0).ceil() as usize;
    assert!(
        hits.len() >= 4 && hits.len() <= 2 * rounds,
        "{} requests in {rounds} rounds of 3 s",
        hits.len()
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_paused_and_probed_without_holding_others() {
    // Retries after 300 ms: the breaker pauses for 300 ms, 600 ms, 1.2 s, … after the 5th.
    let app = spawn_app_with(fast_alerts).await;
    let down = Receiver::start(0).await;
    down.failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let fine = Receiver::start(0).await;
    app.signed_up().await;
    add_endpoint(&app, &down.url, &["balance.low", "test"]).await;
    let endpoint = first_endpoint(&app).await;
    plant_events(&app, endpoint, 40).await;
    down.wait_for(Duration::from_secs(5), |h| h.len() >= 5)
        .await;
    let page = app.get_html("/alerts/settings").await;
    assert!(page.contains("Paused after"), "{page}");
    // Paused: a probe now and then, not 40 rows and their retries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tried = down.hits().len();
    assert!(tried <= 12, "{tried} attempts to a failing endpoint");
    // Other workspaces' alerts go out at once meanwhile.
    let delay = other_workspace_delay(&app, &fine).await;
    assert!(delay < Duration::from_secs(2), "took {delay:?}");
    // The receiver is fixed; Send test event ends the pause: the probe succeeds, the
    // breaker closes, and everything waiting is delivered.
    down.failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(send_test(&app, endpoint).await.status(), 303);
    let start = Instant::now();
    let delivered = "select count(*) from webhook_deliveries where state = 'delivered' \
                     and endpoint_id in (select id from webhook_endpoints where url like '%";
    let delivered = format!("{delivered}{}%')", down.url);
    while app.scalar_i64(&delivered).await < 41 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} of 41 delivered",
            app.scalar_i64(&delivered).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = app.get_html("/alerts/settings").await;
    assert!(page.contains("<td data-label=\"Health\">OK</td>"), "{page}");
}

#[tokio::test]
async fn send_test_event_has_a_budget_per_endpoint() {
    // A receiver that is down keeps test events waiting (the next retry is a minute away).
    let app = spawn_app_with(|s| {
        fast_alerts(s);
        s.webhook_retry_base = Duration::from_secs(60);
    })
    .await;
    let down = Receiver::start(usize::MAX).await;
    app.signed_up().await;
    add_endpoint(&app, &down.url, &["test"]).await;
    let endpoint = first_endpoint(&app).await;
    // Six clicks at once: three are queued, three refused, whatever their order.
    let body = app.form_body("/alerts/settings", &[]).await;
    let path = format!("/alerts/webhooks/{endpoint}/test");
    let answers = futures_util::future::join_all((0..6).map(|_| app.post_body(&path, &body))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [303, 303, 303, 422, 422, 422]);
    let refused = answers.into_iter().find(|r| r.status() == 422).unwrap();
    let html = refused.text().await.unwrap();
    assert!(
        html.contains("already has 3 test events waiting to be delivered"),
        "{html}"
    );
    assert!(html.contains("Nothing was queued."));
    assert_eq!(
        app.scalar_i64("select count(*) from alert_events where kind = 'test'")
            .await,
        3
    );
    // Another endpoint has a budget of its own.
    add_endpoint(&app, &format!("{}/second", down.url), &["test"]).await;
    let second = app
        .scalar_i64("select max(id) from webhook_endpoints")
        .await;
    assert_eq!(send_test(&app, second).await.status(), 303);
    assert_eq!(send_test(&app, endpoint).await.status(), 422);
}

#[tokio::test]
async fn deleting_an_endpoint_mid_delivery_stops_its_retries() {
    let app = spawn_app_with(fast_alerts).await;
    let down = Receiver::start_with(usize::MAX, Duration::from_millis(1500)).await;
    app.signed_up().await;
    add_endpoint(&app, &down.url, &["test"]).await;
    let endpoint = first_endpoint(&app).await;
    assert_eq!(send_test(&app, endpoint).await.status(), 303);
    // In flight: the 500 comes 1.5 s after the request.
    down.wait_for(Duration::from_secs(5), |h| !h.is_empty())
        .await;
    let r = app
        .post_form(
            &format!("/alerts/webhooks/{endpoint}/delete"),
            "/alerts/settings",
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    // The answer, then several retry times (300 ms, 600 ms, …): nothing more is sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(down.hits().len(), 1);
    let log = app.get_html("/alerts/settings").await;
    assert!(
        log.contains("<td data-label=\"State\">failed</td>"),
        "{log}"
    );
    assert!(log.contains("endpoint deleted"), "{log}");
}

#[tokio::test]
async fn deleting_a_workspace_drops_its_outbox() {
    let app = spawn_app_with(fast_alerts).await;
    let down = Receiver::start(usize::MAX).await;
    app.signed_up().await;
    let r = app
        .post_form(
            "/workspaces",
            "/workspaces/new",
            &[("name", "Doomed".into())],
        )
        .await;
    assert_eq!(r.status(), 303, "in the new workspace");
    add_endpoint(&app, &down.url, &["test", "balance.low"]).await;
    let endpoint = first_endpoint(&app).await;
    plant_events(&app, endpoint, 3).await;
    // Failing and retried (fewer than the breaker's five failures in a row).
    down.wait_for(Duration::from_secs(5), |h| h.len() >= 2)
        .await;
    let r = app
        .post_form(
            "/workspace/delete",
            "/workspace/delete",
            &[("confirm_name", "Doomed".into())],
        )
        .await;
    assert_eq!(r.status(), 303);
    let at_deletion = down.hits().len();
    assert_eq!(
        app.scalar_i64("select count(*) from webhook_deliveries where state = 'pending'")
            .await,
        0,
        "its outbox is dropped"
    );
    // At most what was already claimed when it went; then nothing, however long.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = down.hits().len();
    assert!(settled <= at_deletion + 2, "{at_deletion} then {settled}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(down.hits().len(), settled);
}

/// PostgreSQL: two processes deliver from one outbox, and an endpoint's lane is one
/// across them (the lease is in the database).
#[tokio::test]
async fn two_processes_send_at_most_two_at_once_to_one_endpoint() {
    if !is_postgres() {
        return;
    }
    let app = spawn_app_with(fast_alerts).await;
    let _peer = spawn_peer_with(&app, fast_alerts).await;
    let slow = Receiver::start_with(0, Duration::from_secs(1)).await;
    app.signed_up().await;
    add_endpoint(&app, &slow.url, &["balance.low"]).await;
    let endpoint = first_endpoint(&app).await;
    plant_events(&app, endpoint, 20).await;
    slow.wait_for(Duration::from_secs(10), |h| h.len() >= 8)
        .await;
    assert_eq!(slow.most_at_once(), 2);
    // Each event once (no row sent twice at once by the two processes).
    let hits = slow.hits();
    let mut ids: Vec<String> = hits.iter().map(|h| h.body.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), hits.len());
}
