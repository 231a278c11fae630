use std::collections::HashSet;

use lowrouter::domain::{time_util, Credits};
use lowrouter::store::usage::{NewUsage, UsageEntry, UsageFilter, UsageStatus};
use lowrouter::store::Store;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn usage_lists_requests_by_key_name_with_filters_and_totals() {
    let app = spawn_app().await;
    app.signed_up().await;
    let a = app.create_key("prod-server", &[]).await;
    let b = app.create_key("local-dev", &[]).await;
    for _ in 0..3 {
        assert_eq!(app.echo(&a, "aaaa").await.status(), 200);
    }
    assert_eq!(app.echo(&b, "bbbb").await.status(), 200);
    let all = app.get_html("/usage").await;
    assert_eq!(
        all.matches("<td data-label=\"Key\" class=\"name\">prod-server")
            .count(),
        3
    );
    assert_eq!(
        all.matches("<td data-label=\"Key\" class=\"name\">local-dev")
            .count(),
        1
    );
    let filtered = app.get_html("/usage?key=local-dev").await;
    assert_eq!(
        filtered
            .matches("<td data-label=\"Key\" class=\"name\">")
            .count(),
        1
    );
    // Totals: 1 request, 1+4 prompt, 1 completion, 6 tokens at 1000/M.
    assert!(filtered.contains("<span class=\"stat-value\">1</span>"));
    assert!(filtered.contains("0.006"));
    assert!(filtered.contains("<svg"), "chart rendered on the server");

    let bad = app.get("/usage?from=yesterday&status=weird").await;
    assert_eq!(bad.status(), 200);
    let html = bad.text().await.unwrap();
    assert!(html.contains("must be a date") && html.contains("Status must be"));

    let csv = app.get("/usage.csv?key=prod-server").await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("lowrouter-usage-"));
    let body = csv.text().await.unwrap();
    assert_eq!(body.lines().count(), 4, "header + 3 rows");
    assert!(body.starts_with("generation_id,"));
}

#[tokio::test]
async fn csv_is_safe_against_formula_injection_and_quotes() {
    let app = spawn_app().await;
    app.signed_up().await;
    let name = "=cmd|' /C calc'!A0, \"quoted\"";
    let t = app.create_key(name, &[]).await;
    app.echo(&t, "x").await;
    let body = app.get("/usage.csv").await.text().await.unwrap();
    assert!(
        body.contains("\"'=cmd|' /C calc'!A0, \"\"quoted\"\"\""),
        "{body}"
    );
}

#[tokio::test]
async fn other_accounts_usage_is_invisible() {
    let app = spawn_app().await;
    app.signed_up().await;
    let t = app.create_key("secret-project", &[]).await;
    app.echo(&t, "x").await;
    let other = spawn_clone(&app);
    other.signed_up().await;
    assert!(!other.get_html("/usage").await.contains("secret-project"));
    assert!(!other
        .get("/usage.csv")
        .await
        .text()
        .await
        .unwrap()
        .contains("secret-project"));
    assert!(!other.get_html("/").await.contains("secret-project"));
}

// ---------------------------------------------------------------------------------------
// Support: what the test itself knows about each request it made, to compute expectations
// independently of the server.

#[derive(Debug, Clone)]
struct Expected {
    gen: String,
    key: String,
    model: String,
    provider: String,
    region: String,
    status: &'static str,
    prompt: i64,
    completion: i64,
    cost: i64,
    day: i64,
}

fn today() -> i64 {
    time_util::day_number(time_util::now_ms())
}

fn date(day: i64) -> String {
    time_util::format_date(day * 86_400_000)
}

/// Echo's documented rule: ceil(bytes/4) + 4 per message in, ceil(bytes/4) out, and the
/// test catalogue's price of 1000 credits per million tokens = 1000 micro-credits a token.
fn echo_expected(text: &str) -> (i64, i64, i64) {
    let t = (text.len() as i64 + 3) / 4;
    let (p, c) = (t + 4, t);
    (p, c, (p + c) * 1000)
}

/// A chat request; the row it should produce, from the response and the known prices.
async fn call(app: &TestApp, token: &str, key: &str, model: &str, text: &str) -> Expected {
    let r = app
        .chat(
            token,
            json!({"model": model, "messages": [{"role": "user", "content": text}]}),
        )
        .await;
    let header = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let gen = header("x-lowrouter-generation-id");
    assert!(gen.starts_with("gen-"), "generation id header");
    let (provider, region) = (header("x-lowrouter-provider"), header("x-lowrouter-region"));
    let code = r.status().as_u16();
    let status = match code {
        200 => "ok",
        400..=499 => "client_error",
        _ => "upstream_error",
    };
    let (prompt, completion, cost) = match (status, model) {
        ("ok", "lowrouter/echo") => echo_expected(text),
        // The fake upstream reports 10 + 20 tokens; priced 100 and 200 per million.
        ("ok", _) => (10, 20, 10 * 100 + 20 * 200),
        _ => (0, 0, 0),
    };
    Expected {
        gen,
        key: key.into(),
        model: model.into(),
        provider,
        region,
        status,
        prompt,
        completion,
        cost,
        day: today(),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Totals {
    requests: i64,
    prompt: i64,
    completion: i64,
    cost: String,
    errors: i64,
}

fn expected_totals<'a>(rows: impl Iterator<Item = &'a Expected>) -> Totals {
    let mut t = Totals {
        requests: 0,
        prompt: 0,
        completion: 0,
        cost: String::new(),
        errors: 0,
    };
    let mut cost = 0;
    for r in rows {
        t.requests += 1;
        t.prompt += r.prompt;
        t.completion += r.completion;
        cost += r.cost;
        t.errors += i64::from(r.status != "ok");
    }
    t.cost = Credits::from_micros(cost).display_precise();
    t
}

fn page_totals(html: &str) -> Totals {
    let stat = |label: &str| {
        between(
            html,
            &format!("{label}</span><span class=\"stat-value\">"),
            "<",
        )
        .unwrap_or_else(|| panic!("{label} shown"))
        .to_owned()
    };
    Totals {
        requests: stat("Requests").parse().unwrap(),
        prompt: stat("Prompt tokens").parse().unwrap(),
        completion: stat("Completion tokens").parse().unwrap(),
        cost: stat("Credits spent"),
        errors: stat("Errors").parse().unwrap(),
    }
}

/// Generation ids of the table rows, in page order.
fn page_gens(html: &str) -> Vec<String> {
    let table = between(html, "<tbody>", "</tbody>").unwrap_or("");
    table
        .split("<td data-label=\"Time\"><a href=\"/usage/")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

fn older_link(html: &str) -> Option<String> {
    let i = html.find("rel=\"next\"")?;
    let start = html[..i].rfind("href=\"")? + "href=\"".len();
    let end = start + html[start..].find('"')?;
    // HTML-escaped `&` (askama writes `&#38;`).
    Some(html[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// The "Newer" link's target, if the page has one.
fn newer_link(html: &str) -> Option<String> {
    let i = html.find("rel=\"prev\"")?;
    let start = html[..i].rfind("href=\"")? + "href=\"".len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

fn csv_records(body: &str) -> Vec<csv::StringRecord> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_bytes());
    r.records().map(|x| x.unwrap()).collect()
}

fn qs(pairs: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

async fn account_id(app: &TestApp, email: &str) -> lowrouter::domain::WorkspaceId {
    lowrouter::domain::WorkspaceId(
        app.scalar_i64(&format!("select id from accounts where email = '{email}'"))
            .await,
    )
}

/// Rows written through the store (as the gateway's writer does), for days the gateway
/// cannot produce: the past.
#[allow(clippy::too_many_arguments)]
fn backdated(
    gen: &str,
    account_id: lowrouter::domain::WorkspaceId,
    key_id: lowrouter::domain::KeyId,
    key: &str,
    day: i64,
    status: UsageStatus,
    prompt: i64,
    completion: i64,
) -> (UsageEntry, Expected) {
    let started_at = day * 86_400_000 + 3_600_000;
    let cost = prompt * 100 + completion * 200;
    let entry = UsageEntry {
        usage: NewUsage {
            generation_id: gen.into(),
            account_id,
            key_id,
            key_name: key.into(),
            requested_model: "test/ok".into(),
            resolved_model: Some("test/ok".into()),
            provider: Some("fake-eu".into()),
            region: Some("eu-west".into()),
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost: lowrouter::domain::Credits::from_micros(cost),
            status,
            http_status: if status == UsageStatus::Ok { 200 } else { 400 },
            error_code: None,
            streamed: false,
            latency_ms: 120,
            started_at,
            completed_at: started_at + 120,
            secret_id: None,
            secret_last4: None,
            client: None,
        },
        reservation: None,
    };
    let exp = Expected {
        gen: gen.into(),
        key: key.into(),
        model: "test/ok".into(),
        provider: "fake-eu".into(),
        region: "eu-west".into(),
        status: status.as_str(),
        prompt,
        completion,
        cost,
        day,
    };
    (entry, exp)
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn filters_combine_and_totals_match_an_independent_sum_of_the_rows() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    let alpha = app.create_key("alpha", &[]).await;
    let beta = app.create_key("beta", &[("region", "us-east")]).await;
    let mut rows: Vec<Expected> = Vec::new();
    for text in ["a", "hello there", "twelve bytes", "x".repeat(37).as_str()] {
        rows.push(call(&app, &alpha, "alpha", "lowrouter/echo", text).await);
        rows.push(call(&app, &beta, "beta", "lowrouter/echo", text).await);
    }
    rows.push(call(&app, &alpha, "alpha", "test/ok", "hi").await);
    rows.push(call(&app, &alpha, "alpha", "test/ok", "hi again").await);
    rows.push(call(&app, &beta, "beta", "test/us-only", "hi").await);
    rows.push(call(&app, &alpha, "alpha", "test/bad", "hi").await);
    rows.push(call(&app, &alpha, "alpha", "test/fail", "hi").await);
    rows.push(call(&app, &beta, "beta", "test/fail", "hi").await);
    // The catalogue is what it claims: these came out as each status.
    for s in ["ok", "client_error", "upstream_error"] {
        assert!(rows.iter().any(|r| r.status == s), "a {s} row");
    }
    assert!(rows.iter().any(|r| r.region == "us-east"));
    assert!(rows.iter().any(|r| r.provider == "fake-eu"));

    // History on other days, written as the gateway's writer would.
    let store = Store::connect(&app.db_url).await.unwrap();
    let acc = account_id(&app, &email).await;
    let alpha_id = app.key_id("alpha").await;
    let t = today();
    let mut batch = Vec::new();
    for (i, (day, status, p, c)) in [
        (t - 3, UsageStatus::Ok, 100, 50),
        (t - 3, UsageStatus::Ok, 7, 3),
        (t - 3, UsageStatus::ClientError, 0, 0),
        (t - 40, UsageStatus::Ok, 1000, 1000),
        (t - 1, UsageStatus::Ok, 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let (e, x) = backdated(
            &format!("gen-past{i}"),
            acc,
            lowrouter::domain::KeyId(alpha_id),
            "alpha",
            day,
            status,
            p,
            c,
        );
        batch.push(e);
        rows.push(x);
    }
    store.write_usage_batch(&batch).await.unwrap();

    type Pred = fn(&Expected, i64) -> bool;
    let cases: Vec<(Vec<(&str, String)>, Pred)> = vec![
        (vec![], |_, _| true),
        (vec![("key", "alpha".into())], |r, _| r.key == "alpha"),
        (vec![("key", "beta".into())], |r, _| r.key == "beta"),
        (vec![("key", "nobody".into())], |_, _| false),
        (vec![("model", "lowrouter/echo".into())], |r, _| {
            r.model == "lowrouter/echo"
        }),
        (vec![("model", "test/ok".into())], |r, _| {
            r.model == "test/ok"
        }),
        (vec![("provider", "fake-eu".into())], |r, _| {
            r.provider == "fake-eu"
        }),
        (vec![("region", "us-east".into())], |r, _| {
            r.region == "us-east"
        }),
        (vec![("status", "ok".into())], |r, _| r.status == "ok"),
        (vec![("status", "client_error".into())], |r, _| {
            r.status == "client_error"
        }),
        (vec![("status", "upstream_error".into())], |r, _| {
            r.status == "upstream_error"
        }),
        (
            vec![("key", "alpha".into()), ("model", "test/ok".into())],
            |r, _| r.key == "alpha" && r.model == "test/ok",
        ),
        (
            vec![
                ("key", "beta".into()),
                ("region", "us-east".into()),
                ("model", "lowrouter/echo".into()),
            ],
            |r, _| r.key == "beta" && r.region == "us-east" && r.model == "lowrouter/echo",
        ),
        (
            vec![("provider", "fake-eu".into()), ("status", "ok".into())],
            |r, _| r.provider == "fake-eu" && r.status == "ok",
        ),
        (vec![("from", date(t))], |r, t| r.day >= t),
        (vec![("to", date(t - 1))], |r, t| r.day < t),
        (vec![("from", date(t - 3)), ("to", date(t - 3))], |r, t| {
            r.day == t - 3
        }),
        (
            vec![
                ("key", "alpha".into()),
                ("from", date(t - 40)),
                ("to", date(t - 2)),
                ("status", "ok".into()),
            ],
            |r, t| r.key == "alpha" && r.day >= t - 40 && r.day <= t - 2 && r.status == "ok",
        ),
        (vec![("from", date(t + 1))], |_, _| false),
    ];
    for (pairs, pred) in &cases {
        let q = qs(pairs);
        let want: Vec<&Expected> = rows.iter().filter(|r| pred(r, t)).collect();
        let html = app.get_html(&format!("/usage?{q}")).await;
        assert_eq!(
            page_totals(&html),
            expected_totals(want.iter().copied()),
            "totals for ?{q}"
        );
        // Exactly these rows, newest first (all fit on one page).
        let got: HashSet<String> = page_gens(&html).into_iter().collect();
        let want_gens: HashSet<String> = want.iter().map(|r| r.gen.clone()).collect();
        assert_eq!(got, want_gens, "rows for ?{q}");
        if want.is_empty() {
            assert!(html.contains("match these filters") || q.is_empty(), "{q}");
        }
        // The CSV export has exactly the same rows.
        let body = app
            .get_html(&format!(
                "/usage.csv{}{q}",
                if q.is_empty() { "" } else { "?" }
            ))
            .await;
        let csv_gens: HashSet<String> = csv_records(&body)
            .iter()
            .skip(1)
            .map(|r| r[0].to_owned())
            .collect();
        assert_eq!(csv_gens, want_gens, "CSV rows for ?{q}");
        // The filter is echoed back into the form (bookmarkable).
        for (k, v) in pairs {
            if ["key", "from", "to"].contains(k) {
                assert!(
                    html.contains(&format!("value=\"{v}\"")),
                    "{k} kept in the form"
                );
            }
        }
    }

    // The rollup answers whole-day filters; raw rows answer the rest. Both agree with the
    // independent sums (a 1 ms offset forces the raw path).
    for (key, model) in [
        (None, None),
        (Some("alpha"), None),
        (Some("beta"), Some("lowrouter/echo")),
    ] {
        let f = UsageFilter {
            key_name: key.map(str::to_owned),
            model: model.map(str::to_owned),
            ..UsageFilter::default()
        };
        let rollup = store.usage_totals(acc, &f).await.unwrap();
        let raw = store
            .usage_totals(
                acc,
                &UsageFilter {
                    from_ms: Some(1),
                    ..f.clone()
                },
            )
            .await
            .unwrap();
        let want: Vec<&Expected> = rows
            .iter()
            .filter(|r| key.is_none_or(|k| r.key == k) && model.is_none_or(|m| r.model == m))
            .collect();
        for t in [&rollup, &raw] {
            assert_eq!(t.requests, want.len() as i64);
            assert_eq!(t.cost.micros(), want.iter().map(|r| r.cost).sum::<i64>());
            assert_eq!(t.prompt_tokens, want.iter().map(|r| r.prompt).sum::<i64>());
            assert_eq!(
                t.completion_tokens,
                want.iter().map(|r| r.completion).sum::<i64>()
            );
        }
    }

    // The chart: one bar per day and key, labelled with that day's spend.
    let html = app.get_html("/usage?key=alpha").await;
    let past: i64 = rows
        .iter()
        .filter(|r| r.key == "alpha" && r.day == t - 3)
        .map(|r| r.cost)
        .sum();
    let label = format!(
        "<title>{}: {} credits, alpha</title>",
        date(t - 3),
        Credits::from_micros(past).display_precise()
    );
    assert!(html.contains(&label), "chart bar {label}");
    assert!(html.contains("Spend per day (credits)"), "labelled chart");
    // 40 days ago is outside the default 30-day chart, inside an explicit period.
    assert!(!html.contains(&format!("<title>{}:", date(t - 40))));
    let html = app
        .get_html(&format!(
            "/usage?key=alpha&from={}&to={}",
            date(t - 45),
            date(t)
        ))
        .await;
    assert!(html.contains(&format!("<title>{}:", date(t - 40))));

    // Validation: a clear message, not a 500, and the CSV refuses bad filters.
    let r = app
        .get(&format!(
            "/usage?from={}&to={}&before=abc",
            date(t),
            date(t - 1)
        ))
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("on or before") && html.contains("cursor is not valid"));
    assert_eq!(app.get("/usage.csv?status=nope").await.status(), 400);
    assert_eq!(app.get("/usage.csv?from=2026-13-40").await.status(), 400);
    store.close().await;
}

#[tokio::test]
async fn keyset_pages_skip_and_repeat_nothing_while_new_rows_arrive() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("pager", &[]).await;
    let other = app.create_key("other", &[]).await;
    let mut pager: Vec<String> = Vec::new();
    let mut noise: Vec<String> = Vec::new();
    for i in 0..112 {
        pager.push(
            call(&app, &token, "pager", "lowrouter/echo", &format!("m{i}"))
                .await
                .gen,
        );
        if i % 10 == 0 {
            noise.push(
                call(&app, &other, "other", "lowrouter/echo", "noise")
                    .await
                    .gen,
            );
        }
    }
    for filtered in [false, true] {
        // What exists when the walk starts is exactly what the walk must show.
        let mut want: HashSet<String> = pager.iter().cloned().collect();
        if !filtered {
            want.extend(noise.iter().cloned());
        }
        let mut seen: Vec<String> = Vec::new();
        let mut next = Some(
            if filtered {
                "/usage?key=pager"
            } else {
                "/usage"
            }
            .to_owned(),
        );
        let mut pages = 0;
        while let Some(path) = next {
            let html = app.get_html(&path).await;
            let gens = page_gens(&html);
            assert!(gens.len() <= 50);
            seen.extend(gens);
            next = older_link(&html);
            if let (true, Some(n)) = (filtered, &next) {
                assert!(n.contains("key=pager"), "Older keeps the filter: {n}");
            }
            pages += 1;
            assert!(pages <= 5, "the Older link moves on: {path}");
            // New requests between pages.
            for j in 0..3 {
                pager.push(
                    call(&app, &token, "pager", "lowrouter/echo", &format!("new{j}"))
                        .await
                        .gen,
                );
            }
        }
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no row repeated");
        assert_eq!(
            unique, want,
            "no row skipped, none of the new ones mixed in"
        );
        assert_eq!(pages, 3, "50 + 50 + the rest");
        // The newest page starts with the newest row.
        let first = page_gens(&app.get_html("/usage").await);
        assert_eq!(first[0], *pager.last().unwrap());
    }
}

#[tokio::test]
async fn csv_exports_exactly_the_rows_with_escaping_and_a_named_period() {
    let app = spawn_app().await;
    let email = app.signed_up().await;
    // Key names cannot hold control characters; the requested model (client text) can.
    let nasty_key = "=HYPERLINK(\"http://evil\"), \"q\"";
    let token = app.create_key(nasty_key, &[]).await;
    let plain = app.create_key("plain", &[]).await;
    let echo_row = call(
        &app,
        &token,
        nasty_key,
        "lowrouter/echo",
        "hello, \"world\"",
    )
    .await;
    let nasty_model = "+SUM(1,2)\n\"line two\", @x";
    let bad = call(&app, &token, nasty_key, nasty_model, "x").await;
    assert_eq!(bad.status, "client_error");
    let dash_model = "-2+3";
    call(&app, &plain, "plain", dash_model, "x").await;
    // The export joins cells with U+001F in the database; a cell holding it is read again.
    let sep_model = "a\u{1f}b,c";
    let sep = call(&app, &plain, "plain", sep_model, "x").await;
    // Written through the store: a key name with a newline and a tab/@ prefix.
    let store = Store::connect(&app.db_url).await.unwrap();
    let acc = account_id(&app, &email).await;
    let plain_id = app.key_id("plain").await;
    let (e, _) = backdated(
        "gen-newline",
        acc,
        lowrouter::domain::KeyId(plain_id),
        "@evil\r\nname, with \"all\"",
        today() - 2,
        UsageStatus::Ok,
        1,
        2,
    );
    store.write_usage_batch(&[e]).await.unwrap();
    store.close().await;

    let t = today();
    let r = app
        .get(&format!("/usage.csv?from={}&to={}", date(t - 7), date(t)))
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(
        r.headers()["content-disposition"].to_str().unwrap(),
        format!(
            "attachment; filename=\"lowrouter-usage-{}-to-{}.csv\"",
            date(t - 7),
            date(t)
        )
    );
    let body = r.text().await.unwrap();
    let recs = csv_records(&body);
    assert_eq!(
        recs[0].iter().collect::<Vec<_>>(),
        [
            "generation_id",
            "started_at",
            "completed_at",
            "key_name",
            "requested_model",
            "resolved_model",
            "provider",
            "region",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost_credits",
            "latency_ms",
            "status",
            "http_status",
            "error_code",
            "secret_last4",
            "secret",
            "key_id"
        ]
    );
    assert_eq!(recs.len(), 1 + 5, "header and every row, newlines included");
    assert!(recs.iter().all(|r| r.len() == 19));
    let by_gen = |g: &str| recs.iter().find(|r| &r[0] == g).unwrap().clone();
    // Every text cell that a spreadsheet would execute starts with a quote; the text itself
    // (commas, quotes, newlines) survives the round trip.
    let r = by_gen(&echo_row.gen);
    assert_eq!(&r[3], format!("'{nasty_key}"));
    assert_eq!(&r[4], "lowrouter/echo");
    assert_eq!(&r[13], "ok");
    assert_eq!(&r[8], echo_row.prompt.to_string());
    assert_eq!(&r[9], echo_row.completion.to_string());
    assert_eq!(&r[10], (echo_row.prompt + echo_row.completion).to_string());
    assert_eq!(&r[11], Credits::from_micros(echo_row.cost).exact());
    // RFC 3339 times, which spreadsheets read as dates; the secret in ASCII; the key's
    // public id, as the management API names it.
    assert!(
        r[1].starts_with(&format!("{}T", date(t))) && r[1].ends_with('Z'),
        "{}",
        &r[1]
    );
    assert_eq!(r[1].len(), "2026-12-07T17:30:09Z".len());
    assert!(
        r[17].starts_with("lr-sk-") && r[17].contains("...") && r[17].is_ascii(),
        "{}",
        &r[17]
    );
    assert!(r[18].starts_with("key_"), "{}", &r[18]);
    let r = by_gen(&bad.gen);
    // Control characters in what the client asked for are recorded as visible escapes.
    assert_eq!(&r[4], format!("'{}", nasty_model.replace('\n', "\\u{a}")));
    assert_eq!(&r[13], "client_error");
    assert_eq!(&r[11], "0.000000");
    let r = recs
        .iter()
        .find(|r| r[3] == *"plain" && r[4].starts_with('\''))
        .unwrap();
    assert_eq!(&r[4], format!("'{dash_model}"));
    let r = by_gen(&sep.gen);
    assert_eq!(&r[4], sep_model.replace('\u{1f}', "\\u{1f}"));
    assert_eq!(&r[3], "plain");
    assert_eq!(&r[13], "client_error");
    let r = by_gen("gen-newline");
    assert_eq!(&r[3], "'@evil\r\nname, with \"all\"");
    // No line of the raw body starts with a formula character outside quotes.
    for line in body.split("\r\n") {
        assert!(!line.starts_with(['=', '+', '-', '@']), "{line:?}");
    }

    // Exactly the filtered rows: by key name; a period without rows is a header alone.
    let body = app.get_html("/usage.csv?key=plain").await;
    assert_eq!(csv_records(&body).len(), 1 + 2);
    let body = app
        .get_html(&format!("/usage.csv?from={}", date(t + 1)))
        .await;
    assert_eq!(csv_records(&body).len(), 1);
    let all = app.get("/usage.csv").await;
    assert!(all.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("lowrouter-usage-until-{}.csv", date(t))));
    let day = app
        .get(&format!("/usage.csv?from={0}&to={0}", date(t)))
        .await;
    assert_eq!(
        day.headers()["content-disposition"].to_str().unwrap(),
        format!("attachment; filename=\"lowrouter-usage-{}.csv\"", date(t))
    );
}

#[tokio::test]
async fn detail_pages_are_scoped_to_the_account() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("detail-key", &[]).await;
    let row = call(&app, &token, "detail-key", "lowrouter/echo", "some text").await;
    let html = app.get_html("/usage").await;
    assert!(
        html.contains(&format!("href=\"/usage/{}\"", row.gen)),
        "reachable from the table"
    );
    let r = app.get(&format!("/usage/{}", row.gen)).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("detail-key") && html.contains(&row.gen));
    assert!(html.contains(&format!(
        "{} prompt + {} completion",
        row.prompt, row.completion
    )));
    assert_eq!(app.get("/usage/gen-doesnotexist").await.status(), 404);

    let other = spawn_clone(&app);
    other.signed_up().await;
    let r = other.get(&format!("/usage/{}", row.gen)).await;
    assert_eq!(r.status(), 404, "another account's generation id is a 404");
    assert!(!r.text().await.unwrap().contains("detail-key"));
    // Logged out: the login page, not the row.
    let anon = new_client();
    let r = anon
        .get(app.url(&format!("/usage/{}", row.gen)))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200);
}

#[tokio::test]
async fn revoked_keys_keep_their_names_in_history_marked_revoked() {
    let app = spawn_app().await;
    app.signed_up().await;
    let old = app.create_key("rotate-me", &[]).await;
    let gone = call(&app, &old, "rotate-me", "lowrouter/echo", "before").await;
    let id = app.key_id("rotate-me").await;
    let r = app
        .post_form(
            &format!("/keys/{id}/delete"),
            &format!("/keys/{id}/delete"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(app.echo(&old, "after").await.status(), 401);
    // The replacement takes the same name.
    let new = app.create_key("rotate-me", &[]).await;
    let live = call(&app, &new, "rotate-me", "lowrouter/echo", "new").await;

    let html = app.get_html("/usage?key=rotate-me").await;
    // Both keys' history by name: the old key's request, its refusal once deleted (its own
    // history too), the new key's request.
    assert_eq!(page_totals(&html).requests, 3, "both keys' history by name");
    let rows: Vec<&str> = between(&html, "<tbody>", "</tbody>")
        .unwrap()
        .split("<tr>")
        .skip(1)
        .collect();
    let row_of = |g: &str| *rows.iter().find(|r| r.contains(g)).unwrap();
    assert!(row_of(&gone.gen).contains("rotate-me <span class=\"badge bad\">revoked</span>"));
    assert!(!row_of(&live.gen).contains("revoked"));
    assert!(app
        .get_html(&format!("/usage/{}", gone.gen))
        .await
        .contains("rotate-me <span class=\"badge bad\">revoked</span>"));
    assert!(!app
        .get_html(&format!("/usage/{}", live.gen))
        .await
        .contains("badge bad\">revoked"));
    assert!(
        html.contains("<option value=\"rotate-me\">"),
        "name offered"
    );
    let home = app.get_html("/").await;
    assert!(home.contains("rotate-me <span class=\"badge bad\">revoked</span>"));
    let csv = app.get_html("/usage.csv?key=rotate-me").await;
    assert_eq!(csv_records(&csv).len(), 4);
}

#[tokio::test]
async fn home_shows_spend_top_keys_and_models_from_the_same_rows() {
    let app = spawn_app().await;
    app.signed_up().await;
    let a = app.create_key("big-spender", &[]).await;
    let b = app.create_key("small-spender", &[]).await;
    let mut rows = Vec::new();
    for _ in 0..3 {
        rows.push(call(&app, &a, "big-spender", "lowrouter/echo", &"y".repeat(400)).await);
    }
    rows.push(call(&app, &b, "small-spender", "test/ok", "hi").await);
    let html = app.get_html("/").await;
    let today_cost: i64 = rows.iter().map(|r| r.cost).sum();
    let spent = between(
        &html,
        "Spent today (UTC)</span><span class=\"stat-value\">",
        "<",
    )
    .unwrap();
    assert_eq!(spent, Credits::from_micros(today_cost).display_precise());
    let top_keys = between(&html, "Top keys, last 30 days", "</section>").unwrap();
    let big = top_keys.find("big-spender").unwrap();
    let small = top_keys.find("small-spender").unwrap();
    assert!(big < small, "ranked by spend");
    assert!(top_keys.contains(&format!(
        "<td class=\"num\">3</td><td class=\"num\">{}</td>",
        Credits::from_micros(rows[..3].iter().map(|r| r.cost).sum()).display_precise()
    )));
    let top_models = between(&html, "Top models, last 30 days", "</section>").unwrap();
    assert!(top_models.contains("lowrouter/echo") && top_models.contains("test/ok"));
    let recent = between(&html, "Recent requests", "</section>").unwrap();
    assert_eq!(recent.matches("href=\"/usage/gen-").count(), 4);
}

/// Issue 17, items 2 and 3: a refused request reads "429 · Daily limit reached" in the list
/// and can be picked by its reason; the Keys page shows spend against each limit, and a key
/// whose daily limit is used up says until when.
#[tokio::test]
async fn failures_read_as_status_and_reason_and_limits_show_on_keys() {
    let app = spawn_app().await;
    app.signed_up().await;
    let capped = app.create_key("capped", &[("daily_limit", "0.01")]).await;
    let keys = app.get_html("/keys").await;
    assert!(keys.contains("0.00 of 0.01 today"), "spend against limit");
    assert!(keys.contains("No monthly limit") && !keys.contains("None"));

    // 40 bytes of echo cost 0.024 credits: more than the limit allows.
    let text = "x".repeat(40);
    assert_eq!(app.echo(&capped, &text).await.status(), 429);
    let usage = app.get_html("/usage").await;
    assert!(
        usage.contains("429 · Daily limit reached"),
        "status and reason"
    );
    assert!(!usage.contains(">client_error<"), "no bare category");

    let full = app.create_key("full", &[("daily_limit", "0.024")]).await;
    assert_eq!(app.echo(&full, &text).await.status(), 200);
    let r = app
        .chat(
            &full,
            json!({"model": "nobody/none", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);

    // The status filter picks one reason, or an outcome with every reason in it.
    let rows = |html: &str| page_gens(html).len();
    let limited = app.get_html("/usage?status=daily_limit_reached").await;
    assert_eq!(rows(&limited), 1);
    assert!(limited.contains("value=\"daily_limit_reached\" selected"));
    assert!(
        limited.contains("<span class=\"stat-value\">1</span>"),
        "totals follow"
    );
    let unknown = app.get_html("/usage?status=model_not_found").await;
    assert_eq!(rows(&unknown), 1);
    assert!(unknown.contains("404 · Unknown model"));
    assert_eq!(rows(&app.get_html("/usage?status=client_error").await), 2);
    assert_eq!(rows(&app.get_html("/usage?status=ok").await), 1);
    assert!(app
        .get_html("/usage?status=no_such_reason")
        .await
        .contains("Status must be one of the choices"));

    let keys = app.get_html("/keys").await;
    assert!(keys.contains("0.024 of 0.024 today"), "used up");
    assert!(keys.contains("Limit reached until 00:00 UTC"));
    let home = app.get_html("/").await;
    assert!(home.contains("429 · Daily limit reached") && home.contains("200 · OK"));
}

#[tokio::test]
async fn the_key_filter_finds_names_containing_it_and_says_what_a_key_is_called_now() {
    let app = spawn_app().await;
    app.signed_up().await;
    let prod = app.create_key("Prod-Server", &[]).await;
    let other = app.create_key("local_dev", &[]).await;
    assert_eq!(app.echo(&prod, "one").await.status(), 200);
    assert_eq!(app.echo(&other, "two").await.status(), 200);

    // Any case, any part of the name; `_` and `%` are themselves, not wildcards.
    let row = |name: &str| format!("class=\"name\">{name}");
    let html = app.get_html("/usage?key=server").await;
    assert!(html.contains(&row("Prod-Server")) && !html.contains(&row("local_dev")));
    let html = app.get_html("/usage?key=l_d").await;
    assert!(html.contains(&row("local_dev")), "`_` matches itself");
    let html = app.get_html("/usage?key=r_d").await;
    assert!(
        !html.contains(&row("Prod-Server")) && !html.contains(&row("local_dev")),
        "not a wildcard"
    );
    let html = app.get_html("/usage?key=%25").await;
    assert!(!html.contains(&row("Prod-Server")), "a literal %");

    // Renamed: the row keeps its name and says what the key is called now.
    let id = app.key_id("Prod-Server").await;
    let edit = format!("/keys/{id}/edit");
    let r = app
        .post_form(&edit, &edit, &[("name", "prod-eu".into())])
        .await;
    assert_eq!(r.status(), 303);
    let html = app.get_html("/usage?key=SERVER").await;
    assert!(html.contains("now called “prod-eu”"), "{html}");
}

#[tokio::test]
async fn newer_links_walk_back_to_the_same_pages_and_the_count_is_shown() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("walker", &[]).await;
    for i in 0..120 {
        call(&app, &token, "walker", "lowrouter/echo", &format!("m{i}")).await;
    }
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut htmls = Vec::new();
    let mut next = Some("/usage?key=walker".to_owned());
    while let Some(path) = next {
        let html = app.get_html(&path).await;
        pages.push(page_gens(&html));
        next = older_link(&html);
        htmls.push(html);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [50, 50, 20]);
    assert!(htmls[0].contains("Showing 50 of 120 requests"));
    assert!(htmls[2].contains("Showing 20 of 120 requests"));
    assert!(
        newer_link(&htmls[0]).is_none(),
        "the newest page has no Newer"
    );
    // Back from the last page: Newer gives exactly the pages seen on the way, filter kept.
    let back = newer_link(&htmls[2]).expect("Newer on the last page");
    assert!(back.contains("key=walker"), "{back}");
    let html = app.get_html(&back).await;
    assert_eq!(page_gens(&html), pages[1]);
    let html = app
        .get_html(&newer_link(&html).expect("Newer on page 2"))
        .await;
    assert_eq!(page_gens(&html), pages[0]);
    assert!(newer_link(&html).is_none(), "back at the newest: no Newer");
    assert!(older_link(&html).is_some());
}
