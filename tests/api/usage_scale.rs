//! Usage at scale (issue 28): raw rows can go (retention) without any figure changing, and
//! a key-name filter reads rows by the key ids the name resolves to, merged by time.

use lowrouter::domain::time_util;
use serde_json::{json, Value};

use crate::cli::lowrouter;
use crate::helpers::*;

/// Every `stat-value` of a page, in order: the totals (Usage) or spend (Home).
fn stats(html: &str) -> Vec<String> {
    html.split("<span class=\"stat-value\">")
        .skip(1)
        .map(|s| s.split('<').next().unwrap_or_default().to_owned())
        .collect()
}

/// The chart's bars and legend (its SVG), which come from the rollups.
fn chart(html: &str) -> String {
    html.split("<figure class=\"chart card\">")
        .nth(1)
        .and_then(|s| s.split("</figure>").next())
        .unwrap_or_default()
        .to_owned()
}

fn rows(html: &str) -> usize {
    html.matches("<td data-label=\"Key\" class=\"name\">")
        .count()
}

#[tokio::test]
async fn removing_raw_rows_changes_no_total_chart_or_spend() {
    let app = spawn_app().await;
    app.signed_up().await;
    let prod = app.create_key("prod-server", &[]).await;
    let dev = app
        .create_key("local-dev", &[("models", "lowrouter/echo")])
        .await;
    for i in 0..4 {
        assert_eq!(app.echo(&prod, &format!("hello {i}")).await.status(), 200);
    }
    assert_eq!(app.echo(&dev, "hi").await.status(), 200);
    // A refusal with a reason (a model the key may not use): an error in the totals.
    let refused = app
        .chat(
            &dev,
            json!({"model": "test/ok", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(refused.status(), 403);

    let pages = [
        "/usage",
        "/usage?key=prod",
        "/usage?status=client_error",
        "/usage?model=lowrouter/echo",
        "/",
    ];
    let mut before = Vec::new();
    for p in pages {
        let html = app.get_html(p).await;
        before.push((stats(&html), chart(&html)));
    }
    let all = app.get_html("/usage").await;
    assert_eq!(rows(&all), 6, "{all}");
    assert!(all.contains(
        "Requests are kept for 400 days; totals and charts go back to the first request."
    ));
    assert_eq!(stats(&all)[0], "6", "six requests in the totals");
    let key_before: Value = app.api_json(&prod, "/api/v1/key").await;

    // The operator removes every row that started before tomorrow: all of them.
    let tomorrow = time_util::format_date(time_util::now_ms() + 86_400_000);
    let db = app.db_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        lowrouter(&db, &["usage", "purge", "--before", &tomorrow], "")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed 6 usage rows"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(app.scalar_i64("select count(*) from usage").await, 0);

    for (p, was) in pages.iter().zip(&before) {
        let html = app.get_html(p).await;
        assert_eq!(&(stats(&html), chart(&html)), was, "{p} changed");
        assert!(!was.0.is_empty(), "{p} has figures");
        assert!(p == &"/" || !was.1.is_empty(), "{p} has a chart");
    }
    let after = app.get_html("/usage").await;
    assert_eq!(rows(&after), 0, "the request-level rows are gone");
    let key_after: Value = app.api_json(&prod, "/api/v1/key").await;
    assert_eq!(
        key_before["data"], key_after["data"],
        "the key's spend and limits"
    );
    // The gateway still serves, and its new row is listed.
    assert_eq!(app.echo(&prod, "again").await.status(), 200);
    assert_eq!(rows(&app.get_html("/usage").await), 1);

    // A range reaching back past retention says what the list can no longer show.
    let old = time_util::format_date(time_util::now_ms() - 500 * 86_400_000);
    let html = app.get_html(&format!("/usage?from={old}")).await;
    assert!(
        html.contains("the oldest day whose requests are kept"),
        "{html}"
    );

    // Bad input is refused with a clear message, and removes nothing.
    let db = app.db_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        lowrouter(&db, &["usage", "purge", "--before", "soon"], "")
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a date, YYYY-MM-DD"));
    assert_eq!(app.scalar_i64("select count(*) from usage").await, 1);
}

#[tokio::test]
async fn a_name_shared_by_a_deleted_key_and_a_new_one_lists_both_by_time() {
    let app = spawn_app().await;
    app.signed_up().await;
    let first = app.create_key("shared", &[]).await;
    for i in 0..3 {
        assert_eq!(app.echo(&first, &format!("first {i}")).await.status(), 200);
    }
    let id = app.key_id("shared").await;
    let r = app
        .post_form(
            &format!("/keys/{id}/delete"),
            &format!("/keys/{id}/delete"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    let second = app.create_key("shared", &[]).await;
    let other = app.create_key("unrelated", &[]).await;
    for i in 0..3 {
        assert_eq!(
            app.echo(&second, &format!("second {i}")).await.status(),
            200
        );
        assert_eq!(app.echo(&other, &format!("other {i}")).await.status(), 200);
    }
    let html = app.get_html("/usage?key=shared").await;
    assert_eq!(rows(&html), 6, "both keys' rows, nothing else");
    assert_eq!(
        html.matches("<span class=\"badge bad\">revoked</span>")
            .count(),
        3
    );
    // Newest first: the new key's three rows come before the deleted key's.
    let first_revoked = html.find("revoked</span>").unwrap();
    let rows_before_it = html[..first_revoked]
        .matches("<td data-label=\"Key\" class=\"name\">")
        .count();
    assert_eq!(
        rows_before_it, 4,
        "three live rows, then the deleted key's first"
    );
    // Pages of two: the walk visits every row once, in the same order.
    let listed: Vec<Value> = {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        let mk = crate::management::management_key(&app, "reader", true).await;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/usage?key=shared&limit=2&cursor={c}"),
                None => "/api/v1/usage?key=shared&limit=2".to_owned(),
            };
            let page: Value = app.api_json(&mk, &path).await;
            out.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        out
    };
    assert_eq!(listed.len(), 6, "{listed:?}");
    let times: Vec<&str> = listed
        .iter()
        .filter_map(|r| r["started_at"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first across both keys");
}

#[tokio::test]
async fn the_period_export_streams_oldest_first_and_resumes_after_a_cut() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("ledger", &[]).await;
    for i in 0..5 {
        assert_eq!(app.echo(&token, &format!("=cmd {i}")).await.status(), 200);
    }
    let mk = crate::management::management_key(&app, "accounting", true).await;
    let today = time_util::format_date(time_util::now_ms());
    let get = |path: String| {
        let (app, mk) = (&app, &mk);
        async move {
            app.client
                .get(app.url(&path))
                .bearer_auth(mk)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get(format!("/api/v1/usage/export?start={today}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let body = r.text().await.unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{body}");
    let starts: Vec<&str> = lines
        .iter()
        .map(|l| l["started_at"].as_str().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort();
    assert_eq!(starts, sorted, "oldest first");
    assert_eq!(lines[0]["key_name"], "ledger");
    assert_eq!(
        lines[0]["cost"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap()
            .len(),
        6
    );

    // Cut after two rows: resuming from the second's id sends exactly the other three.
    let after = lines[1]["id"].as_str().unwrap();
    let rest = get(format!("/api/v1/usage/export?start={today}&after={after}"))
        .await
        .text()
        .await
        .unwrap();
    let rest_ids: Vec<String> = rest
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = lines[2..]
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rest_ids, expected);

    // CSV: a header, then rows; a client's text that looks like a formula is defused.
    let csv = get(format!("/api/v1/usage/export?start={today}&format=csv")).await;
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    assert!(
        csv.starts_with("id,started_at,completed_at,key_name,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 6);

    // The period bounds what is sent.
    let tomorrow = time_util::format_date(time_util::now_ms() + 86_400_000);
    let none = get(format!(
        "/api/v1/usage/export?start={tomorrow}&end=4102444800"
    ))
    .await;
    assert_eq!(none.status(), 200);
    assert_eq!(none.text().await.unwrap(), "");

    // Bad input: a 400 naming the parameter.
    for (query, param) in [
        ("", "start"),
        ("start=yesterday", "start"),
        (&format!("start={today}&end=0") as &str, "end"),
        (&format!("start={today}&format=xml"), "format"),
        (&format!("start={today}&after=gen-nope"), "after"),
    ] {
        let r = get(format!("/api/v1/usage/export?{query}")).await;
        assert_eq!(r.status(), 400, "{query}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{query}: {v}");
    }

    // Another workspace cannot resume from this one's rows, nor read them.
    let other = spawn_clone(&app);
    other.signed_up().await;
    let other_mk = crate::management::management_key(&other, "theirs", true).await;
    let r = other
        .client
        .get(other.url(&format!("/api/v1/usage/export?start={today}&after={after}")))
        .bearer_auth(&other_mk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = other
        .client
        .get(other.url(&format!("/api/v1/usage/export?start={today}")))
        .bearer_auth(&other_mk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "", "nothing of another workspace");

    // The operator's CLI writes the same rows, without the server.
    let out = std::env::temp_dir().join(format!("lowrouter-export-{}.ndjson", app.port));
    let (db, path) = (app.db_url.clone(), out.to_str().unwrap().to_owned());
    let start = today.clone();
    let o = tokio::task::spawn_blocking(move || {
        lowrouter(
            &db,
            &["usage", "export", "--start", &start, "--out", &path],
            "",
        )
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written, body, "the same rows, the same bytes");
}

/// A database made by the migrations before issue 28, with request rows over several days:
/// upgrading keeps every row, and the rebuilt rollups sum exactly what the rows hold, for
/// the new reason column too (on PostgreSQL the rows also move into day partitions).
#[tokio::test]
async fn upgrading_a_database_with_rows_keeps_them_and_rebuilds_exact_rollups() {
    use lowrouter::store::usage::UsageFilter;
    use sqlx::Connection;
    use std::borrow::Cow;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let now = time_util::now_ms();
    let mut setup = vec![
        "insert into accounts (email, password_hash, created_at) values ('a@example.com', 'x', 0)"
            .to_owned(),
        "insert into api_keys (account_id, name, token_hash, token_prefix, token_last4, created_at) \
         values (1, 'prod', 'h1', 'lr-sk-aaaa', 'aaaa', 0)"
            .to_owned(),
    ];
    // 30 rows over 10 days: every third an upstream error, every fifth a client error.
    for i in 0..30_i64 {
        let at = now - (i % 10) * 86_400_000 - i * 1000;
        let (status, code) = match (i % 3, i % 5) {
            (0, _) => ("upstream_error", "'upstream_error'"),
            (_, 0) => ("client_error", "'upstream_rejected'"),
            _ => ("ok", "null"),
        };
        setup.push(format!(
            "insert into usage (generation_id, account_id, key_id, key_name, requested_model, \
             resolved_model, provider, region, prompt_tokens, completion_tokens, total_tokens, cost, \
             status, http_status, error_code, streamed, latency_ms, started_at, completed_at) \
             values ('gen-{at}-{i:04}', 1, 1, 'prod', 'lowrouter/echo', 'lowrouter/echo', 'lowrouter', \
             'eu-west', {p}, 5, {t}, {c}, '{status}', 200, {code}, 0, 10, {at}, {at})",
            p = 10 + i,
            t = 15 + i,
            c = 1000 * (i + 1),
        ));
    }
    if is_postgres() {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut m = sqlx::migrate!("./migrations/postgres");
        let before = m.migrations.iter().position(|m| m.version == 21).unwrap();
        m.migrations = Cow::Owned(m.migrations[..before].to_vec());
        m.run(&mut c).await.unwrap();
        for sql in &setup {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    } else {
        let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        let mut m = sqlx::migrate!("./migrations/sqlite");
        let before = m.migrations.iter().position(|m| m.version == 21).unwrap();
        m.migrations = Cow::Owned(m.migrations[..before].to_vec());
        m.run(&mut c).await.unwrap();
        for sql in &setup {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
    let store = lowrouter::store::Store::connect(&url).await.unwrap();
    let ws = lowrouter::domain::WorkspaceId(1);
    let all = store
        .usage_totals(ws, &UsageFilter::default())
        .await
        .unwrap();
    assert_eq!(all.requests, 30);
    assert_eq!(all.cost.micros(), (1..=30).map(|i| 1000 * i).sum::<i64>());
    assert_eq!(
        all.errors,
        10 + 4,
        "ten upstream errors, four client errors"
    );
    let by_reason = UsageFilter {
        error_code: Some("upstream_rejected".into()),
        ..UsageFilter::default()
    };
    assert_eq!(
        store.usage_totals(ws, &by_reason).await.unwrap().requests,
        4
    );
    let keyed = UsageFilter {
        key_id: Some(lowrouter::domain::KeyId(1)),
        ..UsageFilter::default()
    };
    let key_totals = store.usage_totals(ws, &keyed).await.unwrap();
    assert_eq!(
        (key_totals.requests, key_totals.cost),
        (all.requests, all.cost)
    );
    let rows = store
        .list_usage(ws, &UsageFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 30, "every row kept");
    assert!(
        rows.windows(2)
            .all(|w| (w[0].started_at, w[0].id) > (w[1].started_at, w[1].id)),
        "newest first by start"
    );
    if is_postgres() {
        // Every day with rows has its partition, and the week ahead is ready.
        let today = time_util::day_number(now);
        let days = store.usage_partition_days().await.unwrap();
        for d in today - 10..=today + 7 {
            let has_rows = d > today - 10
                || rows
                    .iter()
                    .any(|r| time_util::day_number(r.started_at) == d);
            assert_eq!(
                days.contains(&d),
                has_rows || d >= today,
                "day {d}: {days:?}"
            );
        }
        // Retention drops whole days: the ten days' rows go, today's stay.
        let purged = lowrouter::startup::purge_usage(
            &store,
            time_util::date_start_ms(time_util::from_ms(now).date()),
        )
        .await
        .unwrap();
        assert!(purged.days >= 9, "{purged:?}");
        let left = store
            .list_usage(ws, &UsageFilter::default(), None, 100)
            .await
            .unwrap();
        assert!(left
            .iter()
            .all(|r| time_util::day_number(r.started_at) == today));
        let after = store
            .usage_totals(ws, &UsageFilter::default())
            .await
            .unwrap();
        assert_eq!(
            (after.requests, after.cost),
            (all.requests, all.cost),
            "totals kept"
        );
    }
    store.close().await;
}

/// Two processes creating the week ahead's partitions at once (PostgreSQL): each day gets
/// exactly one, and neither fails.
#[tokio::test]
async fn two_processes_creating_day_partitions_at_once_do_not_race() {
    if !is_postgres() {
        return;
    }
    let app = spawn_app().await;
    let a = lowrouter::store::Store::connect(&app.db_url).await.unwrap();
    let b = lowrouter::store::Store::connect(&app.db_url).await.unwrap();
    // A week well ahead of the one the server made: 40 days on, none of it exists yet.
    let day = time_util::day_number(time_util::now_ms()) + 40;
    let (x, y) = tokio::join!(
        a.ensure_usage_partitions(day),
        b.ensure_usage_partitions(day)
    );
    let made = x.unwrap() + y.unwrap();
    let days = a.usage_partition_days().await.unwrap();
    for d in day..=day + lowrouter::store::usage_partitions::DAYS_AHEAD {
        assert_eq!(days.iter().filter(|x| **x == d).count(), 1, "day {d}");
    }
    assert!(made <= 8, "each created once at most: {made}");
    // And dropping is as safe: both drop the days before, once.
    let (x, y) = tokio::join!(
        a.drop_usage_partitions_before(day + 4, day + 4),
        b.drop_usage_partitions_before(day + 4, day + 4)
    );
    x.unwrap();
    y.unwrap();
    let left = a.usage_partition_days().await.unwrap();
    assert!(left.iter().all(|d| *d >= day + 4), "{left:?}");
    a.close().await;
    b.close().await;
}

/// Hostile queries to the usage API: huge numbers, NUL bytes, endless lists are 400s that
/// name the parameter, never a 500.
#[tokio::test]
async fn the_usage_api_refuses_hostile_queries_by_name() {
    let app = spawn_app().await;
    app.signed_up().await;
    let mk = crate::management::management_key(&app, "probe", true).await;
    let many: String = (0..101).map(|i| format!("&models=m{i}")).collect();
    for (query, param) in [
        ("start_time=99999999999999999999".to_owned(), "start_time"),
        ("start_time=%00".to_owned(), "start_time"),
        ("start_time=1&bucket_width=1d&limit=32".to_owned(), "limit"),
        (
            "start_time=1&bucket_width=1m&limit=1441".to_owned(),
            "limit",
        ),
        ("start_time=1&group_by=user_id".to_owned(), "group_by"),
        ("start_time=1&page=page_%00".to_owned(), "page"),
        (format!("start_time=1{many}"), "models"),
    ] {
        let r = app
            .client
            .get(app.url(&format!("/api/v1/organization/usage/completions?{query}")))
            .bearer_auth(&mk)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["param"], param, "{query}: {v}");
    }
}
