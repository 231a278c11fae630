//! Hostile input and poisoned rows (issue 11): no string from a request reaches a database
//! that can refuse it, and a row the database does refuse fails only its own request.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;

/// A chat body for a model, optionally streamed.
fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn nul_and_control_characters_in_the_model_fail_only_their_own_request() {
    let app = spawn_app().await;
    app.signed_up().await;
    let good = app.create_key("good", &[]).await;
    let attacker = spawn_clone(&app);
    attacker.signed_up().await;
    let evil = attacker.create_key("evil", &[]).await;

    // Hostile and good requests at once, so they share group-commit batches.
    let hostile = [
        "\u{0}",
        "a\u{0}b",
        "\u{1b}[31m",
        "\u{85}",
        &"x".repeat(5000),
    ];
    let bad = join_all(
        (0..10).map(|i| attacker.chat(&evil, body(hostile[i % hostile.len()], i % 2 == 0))),
    );
    let fine = join_all((0..20).map(|i| app.chat(&good, body("lowrouter/echo", i % 2 == 0))));
    let (bad, fine) = tokio::join!(bad, fine);
    for r in bad {
        assert_eq!(r.status(), 404, "an unknown model, whatever its bytes");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(!msg.contains('\u{0}') && msg.len() < 400, "{msg}");
    }
    for r in fine {
        assert_eq!(r.status(), 200);
        let streamed = r.headers()["content-type"] == "text/event-stream";
        let text = r.text().await.unwrap();
        if streamed {
            assert!(
                text.ends_with("data: [DONE]\n\n"),
                "stream completed: {text}"
            );
        }
    }
    // Every request was recorded, the hostile ones with an escaped, bounded model name.
    app.get_html("/usage").await; // waits for the usage applier (SQLite)
    let rows = app.scalar_i64("select count(*) from usage").await;
    assert_eq!(rows, 30);
    let nul_rows = app
        .scalar_i64("select count(*) from usage where requested_model = '\\u{0}'")
        .await;
    assert_eq!(nul_rows, 2, "\\u0000 recorded as a visible escape");
    let longest = app
        .scalar_i64("select cast(max(length(requested_model)) as bigint) from usage")
        .await;
    assert!(longest <= 101, "bounded: {longest}");
    // No client string became a rollup model (they would show in Top models).
    let bogus_models = app
        .scalar_i64(
            "select count(*) from usage_daily where model <> '' and model <> 'lowrouter/echo'",
        )
        .await;
    assert_eq!(bogus_models, 0);
    let held = app.scalar_i64(HELD_SQL).await;
    assert_eq!(held, 0, "no hold left behind");
}

/// What every account holds for requests in flight: `reserved`, net of charges still on
/// lease rows for the account row (PostgreSQL; migration 0019), as every reader sees it.
const HELD_SQL: &str =
    "select cast(sum(reserved) - (select coalesce(sum(charged), 0) from leases) \
     as bigint) from accounts";

#[tokio::test]
async fn nul_in_filters_ids_and_exports_is_a_clean_client_error() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    assert_eq!(app.echo(&token, "hi").await.status(), 200);

    let page = app.get("/usage?key=%00&model=a%00b").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("must not contain control characters"),
        "{html}"
    );

    for path in ["/usage.csv?key=%00", "/usage.csv?provider=%01x"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
    }
    let csv = app.get("/usage.csv").await;
    assert_eq!(csv.status(), 200);
    assert_eq!(
        csv.text().await.unwrap().lines().count(),
        2,
        "header and one row"
    );

    for path in [
        "/usage/%00",
        "/usage/gen-%00",
        "/usage/gen-a%2Fb",
        &format!("/usage/gen-{}", "a".repeat(300)),
    ] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
    for path in ["/api/v1/generation/%00", "/api/v1/generation/gen-x%00y"] {
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "not_found");
    }
}

/// Plants a trigger that makes the database refuse the usage rows of key `poisoned`.
async fn poison_key_rows(app: &TestApp) {
    if is_postgres() {
        app.execute_sql(
            "create function refuse_poisoned() returns trigger language plpgsql as $$ begin \
             raise exception 'planted refusal' using errcode = 'check_violation'; end $$",
        )
        .await;
        app.execute_sql(
            "create trigger poisoned before insert on usage for each row \
             when (new.key_name = 'poisoned') execute function refuse_poisoned()",
        )
        .await;
    } else {
        app.execute_sql(
            "create trigger poisoned before insert on usage when new.key_name = 'poisoned' \
             begin select raise(abort, 'planted refusal'); end",
        )
        .await;
    }
}

#[tokio::test]
async fn a_row_the_database_refuses_fails_only_its_own_request_and_streams_are_still_charged() {
    let app = spawn_app().await;
    app.signed_up().await;
    let good = app.create_key("good", &[]).await;
    let poisoned = app.create_key("poisoned", &[]).await;
    poison_key_rows(&app).await;
    let balance = |v: Value| v["data"]["balance"].as_str().unwrap().to_owned();
    let before = balance(app.api_json(&good, "/api/v1/credits").await);

    let good_ones = join_all((0..30).map(|i| app.chat(&good, body("lowrouter/echo", i % 2 == 0))));
    let poisoned_stream = app.chat(&poisoned, body("lowrouter/echo", true));
    let poisoned_plain = app.chat(&poisoned, body("lowrouter/echo", false));
    let (good_ones, stream, plain) = tokio::join!(good_ones, poisoned_stream, poisoned_plain);
    for r in good_ones {
        assert_eq!(r.status(), 200);
        let streamed = r.headers()["content-type"] == "text/event-stream";
        let text = r.text().await.unwrap();
        assert!(!streamed || text.ends_with("data: [DONE]\n\n"), "{text}");
    }
    assert_eq!(
        stream.status(),
        200,
        "a stream's status is sent before its usage"
    );
    let stream_text = stream.text().await.unwrap();
    assert!(
        stream_text.contains("hi"),
        "content was delivered: {stream_text}"
    );
    let plain_status = plain.status();
    if is_postgres() {
        // The row is refused before the answer: the body is withheld, nothing charged.
        assert!(!stream_text.ends_with("data: [DONE]\n\n"), "{stream_text}");
        assert_eq!(plain_status, 500);
        let v: Value = plain.json().await.unwrap();
        assert_eq!(v["error"]["code"], "internal_error");
    } else {
        // SQLite answers once the usage is journaled; the refusal comes when it is applied.
        assert_eq!(plain_status, 200);
    }

    let after = app.api_json(&good, "/api/v1/credits").await; // waits for the applier
    assert_eq!(
        after["data"]["reserved"], "0.000000",
        "no hold left locked: {after}"
    );
    let good_rows = app
        .scalar_i64("select count(*) from usage where key_name = 'good'")
        .await;
    assert_eq!(good_rows, 30, "every other request in the batch recorded");
    let poisoned_rows = app
        .scalar_i64("select count(*) from usage where key_name = 'poisoned'")
        .await;
    assert_eq!(poisoned_rows, 0);
    // Spent: the 30 recorded requests, plus the delivered poisoned stream (and on SQLite the
    // answered plain request too): the poisoned key's spend is what its delivered content cost.
    let recorded = app
        .scalar_i64("select cast(sum(cost) as bigint) from usage")
        .await;
    let spent = to_micros(&before) - to_micros(&balance(after));
    let poisoned_spend = app
        .scalar_i64("select cast(day_spend as bigint) from api_keys where name = 'poisoned'")
        .await;
    let one_echo = recorded / 30;
    assert!(one_echo > 0);
    let delivered = if is_postgres() { 1 } else { 2 };
    assert_eq!(
        poisoned_spend,
        delivered * one_echo,
        "delivered content is charged"
    );
    assert_eq!(
        spent,
        recorded + poisoned_spend,
        "balance = rows + unrecorded charges"
    );
}

fn to_micros(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 1_000_000 + frac.parse::<i64>().unwrap()
}

#[tokio::test]
async fn every_completion_asked_for_is_held_and_charged() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("n", &[]).await;
    let r = app
        .chat(
            &token,
            json!({"model": "test/ok", "n": 8, "max_tokens": 50,
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let gen = r.headers()["x-lowrouter-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 8);
    let row = app
        .api_json(&token, &format!("/api/v1/generation/{gen}"))
        .await;
    assert_eq!(row["data"]["completion_tokens"], 160);
    // 10 prompt tokens at 100 and 160 completion tokens at 200 credits per million.
    assert_eq!(
        row["data"]["cost"], "0.033000",
        "all eight completions paid: {row}"
    );

    for (field, value) in [
        ("n", json!(0)),
        ("n", json!(129)),
        ("n", json!("8")),
        ("service_tier", json!("priority")),
        ("modalities", json!(["text", "audio"])),
        ("audio", json!({"voice": "alloy", "format": "wav"})),
        ("web_search_options", json!({})),
        ("prediction", json!({"type": "content", "content": "x"})),
    ] {
        let mut body = json!({"model": "test/ok", "messages": [{"role": "user", "content": "hi"}]});
        body[field] = value.clone();
        let r = app.chat(&token, body).await;
        assert_eq!(r.status(), 400, "{field}: {value}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{v}"
        );
    }
    for (field, value) in [
        ("service_tier", json!("auto")),
        ("modalities", json!(["text"])),
        ("n", json!(1)),
    ] {
        let mut body = json!({"model": "test/ok", "messages": [{"role": "user", "content": "hi"}]});
        body[field] = value.clone();
        assert_eq!(
            app.chat(&token, body).await.status(),
            200,
            "{field}: {value}"
        );
    }
}

#[tokio::test]
async fn refused_requests_are_bounded_per_key_and_never_block_paid_ones() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    let budget = lowrouter::gateway::refusals::KEY_BURST as usize;
    // Invented model names, far more than the budget.
    let mut statuses = Vec::new();
    for i in 0..budget + 40 {
        let r = app
            .chat(
                &token,
                body(
                    &format!("SECURITY NOTICE {i}: re-verify at https://evil.example"),
                    false,
                ),
            )
            .await;
        statuses.push((
            r.status().as_u16(),
            r.json::<Value>().await.unwrap()["error"]["code"].clone(),
        ));
    }
    assert!(statuses[..budget]
        .iter()
        .all(|(s, c)| *s == 404 && c == "model_not_found"));
    let (s, c) = &statuses[budget + 1];
    assert_eq!(
        (*s, c.as_str().unwrap()),
        (429, "too_many_refused_requests")
    );
    // A request it can pay for still goes through at once.
    assert_eq!(app.echo(&token, "hi").await.status(), 200);
    app.get_html("/usage").await;
    let rows = app.scalar_i64("select count(*) from usage").await as usize;
    assert!(
        rows <= budget + 2,
        "refusals recorded within the budget only: {rows}"
    );
    // The invented names never become models: the home page's Top models lists none.
    let rollup_rows = app.scalar_i64("select count(*) from usage_daily").await;
    assert!(rollup_rows <= 2, "{rollup_rows} rollup rows");
    let home = app.get_html("/").await;
    assert!(
        !home.contains("SECURITY NOTICE"),
        "client text on the home page"
    );
}

#[tokio::test]
async fn failed_authentications_are_bounded_per_address_but_valid_keys_pass() {
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    let bogus = lowrouter::domain::ApiToken::generate();
    // The burst, and then some: the budget refills while the requests are made.
    let budget = lowrouter::gateway::refusals::ADDRESS_BURST as usize;
    let mut last = 0;
    for _ in 0..budget * 2 {
        last = app.echo(bogus.expose(), "hi").await.status().as_u16();
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "the address's failures are throttled");
    assert_eq!(
        app.echo(&token, "hi").await.status(),
        200,
        "a valid key from the same address is served"
    );
}

/// Opens a connection that sends a form POST's headers and a few bytes of a 1000-byte body,
/// then nothing.
async fn stalled_post(app: &TestApp) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let head = "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nemail=a";
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Reads until the server answers and closes, or `limit` passes; what it sent.
async fn read_answer(s: &mut tokio::net::TcpStream, limit: std::time::Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(limit, s.read_to_end(&mut buf)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&buf).into_owned())
}

#[tokio::test]
async fn slow_bodies_get_a_deadline_and_uncredentialed_ones_are_bounded() {
    use std::time::Duration;
    let app = spawn_app_with(|s| s.body_read_timeout = Duration::from_secs(1)).await;
    let bound = lowrouter::transport::PER_ADDRESS;
    let mut stalled = Vec::new();
    for _ in 0..bound {
        stalled.push(stalled_post(&app).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more from the same address is turned away at once, before its body is read.
    let mut extra = stalled_post(&app).await;
    let answer = read_answer(&mut extra, Duration::from_millis(900)).await;
    let answer = answer.expect("answered before the others' deadline");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // The stalled ones are answered and closed after the deadline, not held open.
    for mut s in stalled {
        let answer = read_answer(&mut s, Duration::from_secs(8)).await;
        let answer = answer.expect("closed after the body deadline");
        assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    }
    // Their slots are back: an ordinary sign-up goes through.
    assert_eq!(app.signup("after@example.com").await.status(), 303);
}

#[tokio::test]
async fn a_forged_form_id_creates_nothing_and_is_not_stored() {
    let app = spawn_app().await;
    app.signed_up().await;
    let page = app.get_html("/keys/new").await;
    let csrf = csrf_of(&page);
    // Under the form body limit (256 KiB), so the form is read.
    let huge = "x".repeat(200_000);
    for forged in ["a\u{0}b", huge.as_str(), ""] {
        let r = app
            .client
            .post(app.url("/keys"))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("form_id", forged),
                ("name", "forged"),
            ])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
    }
    assert_eq!(app.scalar_i64("select count(*) from api_keys").await, 0);
    let longest = app
        .scalar_i64("select cast(coalesce(max(length(state)), 0) as bigint) from sessions")
        .await;
    assert!(longest < 10_000, "the session stayed small: {longest}");
}

/// NUL and other control characters in every field, query, path and body the product takes:
/// a clear 4xx (or the form back), never a 500, on either database.
#[tokio::test]
async fn nul_bytes_anywhere_are_answered_without_a_server_error() {
    let app = spawn_app().await;
    let nul = "a\u{0}b\u{1}c";
    let fields = |email: &str| vec![("email", email.to_owned()), ("password", nul.to_owned())];
    for path in ["/signup", "/login"] {
        let r = app.post_form(path, path, &fields(nul)).await;
        assert!(
            r.status().is_client_error() || r.status() == 200,
            "{path}: {}",
            r.status()
        );
        let r = app.post_form(path, path, &fields("x@example.com")).await;
        assert!(!r.status().is_server_error(), "{path}: {}", r.status());
    }
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    let id = app.key_id("k").await;
    for field in [
        "name",
        "models",
        "region",
        "daily_limit",
        "monthly_limit",
        "expires_at",
    ] {
        let mut f = key_fields("n", &[]);
        f.retain(|(k, _)| *k != field);
        f.push((field, nul.into()));
        let r = app.create_key_response(&f).await;
        assert!(
            !r.status().is_server_error(),
            "create {field}: {}",
            r.status()
        );
        let r = app
            .post_form(&format!("/keys/{id}/edit"), &format!("/keys/{id}/edit"), &f)
            .await;
        assert!(
            !r.status().is_server_error(),
            "edit {field}: {}",
            r.status()
        );
    }
    for path in [
        "/usage?key=%00&model=%00&provider=%00&region=%00&status=%00&from=%00&to=%00&before=%00",
        "/usage.csv?model=%00",
        "/usage/%00",
        "/keys/%00/edit",
        "/keys/1%00/delete",
        "/static/%00",
        "/%00",
    ] {
        let r = app.get(path).await;
        assert!(!r.status().is_server_error(), "{path}: {}", r.status());
    }
    for body in [
        json!({"model": "lowrouter/echo", "messages": [{"role": nul, "content": nul}]}),
        json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": [{"type": "text", "text": nul}]}]}),
        json!({"model": "lowrouter/echo", "user": nul, "stop": [nul], "messages": [{"role": "user", "content": "x"}]}),
    ] {
        let r = app.chat(&token, body.clone()).await;
        assert!(!r.status().is_server_error(), "{body}: {}", r.status());
    }
    app.get_html("/usage").await;
    assert!(app.scalar_i64("select count(*) from usage").await >= 3);
}

/// PostgreSQL: the database fails every usage write for a while (not for the data: an
/// outage). A stream delivered meanwhile is still charged once the database is back, and a
/// complete answer that got its 500 has its hold released. (SQLite journals usage before
/// answering, so an outage of the database file cannot lose it.)
#[tokio::test]
async fn a_database_outage_at_record_time_still_charges_delivered_streams() {
    if !is_postgres() {
        return;
    }
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    app.execute_sql("create table planted_outage (x int)").await;
    app.execute_sql(
        "create function planted_outage_fn() returns trigger language plpgsql as $$ begin \
         if exists (select 1 from planted_outage) then \
         raise exception 'planted outage' using errcode = '55P03'; end if; return new; end $$",
    )
    .await;
    app.execute_sql(
        "create trigger planted_outage before insert on usage for each row \
         execute function planted_outage_fn()",
    )
    .await;
    app.execute_sql("insert into planted_outage values (1)")
        .await;

    let (stream, plain) = tokio::join!(
        app.chat(&token, body("lowrouter/echo", true)),
        app.chat(&token, body("lowrouter/echo", false))
    );
    let text = stream.text().await.unwrap();
    assert!(
        text.contains("hi") && !text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert_eq!(plain.status(), 500);

    app.execute_sql("delete from planted_outage").await;
    let mut settled = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let rows = app.scalar_i64("select count(*) from usage").await;
        let held = app.scalar_i64(HELD_SQL).await;
        if rows == 1 && held == 0 {
            settled = true;
            break;
        }
    }
    assert!(settled, "the stream's row written and every hold released");
    let cost = app.scalar_i64("select cost from usage").await;
    let spent = app.scalar_i64("select day_spend from api_keys").await;
    assert!(cost > 0);
    assert_eq!(
        spent, cost,
        "the delivered stream is charged, the withheld answer is not"
    );
    assert_eq!(app.scalar_i64("select count(*) from reservations").await, 0);
}

/// A limit field of 200,000 minus signs (within the form's 256 KiB) is a form error, and
/// the server is still there: it once recursed once per sign and overflowed its stack,
/// which aborts the whole process.
#[tokio::test]
async fn a_limit_of_many_signs_is_a_form_error_not_a_crash() {
    let app = spawn_app().await;
    app.signed_up().await;
    let signs = format!("{}5", "-".repeat(200_000));
    let r = app
        .create_key_response(&key_fields("signs", &[("daily_limit", signs.as_str())]))
        .await;
    assert_eq!(r.status(), 422);
    assert!(app.get_html("/keys").await.contains("API keys"));
}

/// PostgreSQL: the lease a request was served from has no row any more when its usage is
/// written (another process's liveness sweep released it, say while this process's liveness
/// connection was down). The charge is not lost with the row: the key's spend and the
/// account's balance get it directly; and the slice is not given back a second time.
#[tokio::test]
async fn a_charge_whose_lease_row_is_gone_still_reaches_the_key_and_the_balance() {
    if !is_postgres() {
        return;
    }
    let app = spawn_app().await;
    app.signed_up().await;
    let token = app.create_key("k", &[]).await;
    assert_eq!(app.echo(&token, "takes a lease").await.status(), 200);
    assert_eq!(app.scalar_i64("select count(*) from leases").await, 1);
    // What the sweep does to a dead process's lease: the slice's remaining amount goes back
    // to the key's counters and the account's `reserved`, its charges into the account, and
    // the row goes.
    app.execute_sql(
        "update api_keys set day_spend = day_spend - (select amount from leases), \
         month_spend = month_spend - (select amount from leases)",
    )
    .await;
    app.execute_sql(
        "update accounts set reserved = reserved - (select amount + charged from leases), \
         balance = balance - (select charged from leases) \
         where id = (select account_id from leases)",
    )
    .await;
    app.execute_sql("delete from leases").await;
    let spend = "select day_spend from api_keys";
    let balance =
        "select balance - reserved from accounts where id = (select account_id from api_keys)";
    let (spend_before, balance_before) =
        (app.scalar_i64(spend).await, app.scalar_i64(balance).await);

    // Served from the slice this process still holds in memory.
    assert_eq!(app.echo(&token, "after the sweep").await.status(), 200);
    let cost = app
        .scalar_i64("select cost from usage order by id desc limit 1")
        .await;
    assert!(cost > 0);
    assert_eq!(
        app.scalar_i64(spend).await,
        spend_before + cost,
        "the key's spend has it"
    );
    assert_eq!(
        app.scalar_i64(balance).await,
        balance_before - cost,
        "the balance has it"
    );
    // A read gives this process's unused slices back first; the swept one is not given
    // back a second time (that would take the key's spend below what it spent).
    app.api_json(&token, "/api/v1/credits").await;
    assert_eq!(
        app.scalar_i64(spend).await,
        spend_before + cost,
        "a released slice is not released twice"
    );
    assert_eq!(app.scalar_i64(HELD_SQL).await, 0);
}
