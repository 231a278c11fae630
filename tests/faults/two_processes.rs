//! Two processes on one PostgreSQL database.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_enforce_each_others_changes_at_once() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("skipped: set LOWROUTER_TEST_DATABASE_URL to run two processes on PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_postgres(&admin).await;
    let a = Server::start(dir.path(), &db_url, "proc-a", &[]).await;
    let b = Server::start(dir.path(), &db_url, "proc-b", &[]).await;
    let api = api_client();
    let on_a = Browser::new(&a);
    on_a.signed_up().await;
    let token = on_a.create_key("shared", &[]).await;
    let id = on_a.key_id("shared").await;
    // Both serve the key (and both warmed any connection or cache they have).
    for server in [&a, &b] {
        for stream in [false, true] {
            let r = echo(&api, &server.base, &token, "both", stream)
                .await
                .unwrap();
            assert!(r.complete, "{} serves the key", server.base);
        }
    }

    // The same session works on B: the session secret is shared through the database.
    let on_b = Browser::at(&b.base);
    let cookie = on_a.cookies_seen.lock().unwrap().last().unwrap().clone();
    let r = on_b
        .client
        .get(b.url("/keys"))
        .header("cookie", format!("lowrouter_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "A's session is valid on B");

    // Disable on A (confirmed: the key is in use): B refuses the very next request. Enable
    // on A: B serves again.
    let r = on_a
        .post_form(&format!("/keys/{id}/disable"), "/keys", &[("confirm", "1")])
        .await;
    assert_eq!(r.status(), 303);
    let r = echo(&api, &b.base, &token, "disabled?", false)
        .await
        .unwrap();
    assert_eq!(r.status, 401, "B enforces A's Disable at once");
    let r = on_a
        .post_form(&format!("/keys/{id}/enable"), "/keys", &[])
        .await;
    assert_eq!(r.status(), 303);
    assert!(
        echo(&api, &b.base, &token, "enabled", false)
            .await
            .unwrap()
            .complete
    );

    // Delete on A: the very next request on B fails, streaming or not, and on A too.
    assert_eq!(on_a.delete_key(id).await.status(), 303);
    for (server, stream) in [(&b, false), (&b, true), (&a, false)] {
        let r = echo(&api, &server.base, &token, "deleted?", stream)
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{} after Delete on A", server.base);
    }
}

/// Retirement and quarantine are rows the gateway reads on every request: what process A
/// commits, process B enforces on its very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_enforce_retirement_and_quarantine_at_once() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("skipped: set LOWROUTER_TEST_DATABASE_URL to run two processes on PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_postgres(&admin).await;
    let a = Server::start(dir.path(), &db_url, "life-a", &[]).await;
    let b = Server::start(dir.path(), &db_url, "life-b", &[]).await;
    let api = api_client();
    let on_a = Browser::new(&a);
    on_a.signed_up().await;
    let old = on_a.create_key("rolled", &[]).await;
    let id = on_a.key_id("rolled").await;
    let ok = |r: Reply| r.complete;
    assert!(ok(echo(&api, &b.base, &old, "warm", false).await.unwrap()));

    // Roll on A: both secrets work on B. Retire now on A: B refuses the old one at once.
    let r = on_a
        .post_form(
            &format!("/keys/{id}/roll"),
            &format!("/keys/{id}/roll"),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let new = between(&html, "value=\"lr-sk-", "\"")
        .map(|t| format!("lr-sk-{t}"))
        .unwrap();
    for t in [&old, &new] {
        assert!(ok(echo(&api, &b.base, t, "both", false).await.unwrap()));
    }
    let r = on_a
        .post_form(
            &format!("/keys/{id}/retire"),
            &format!("/keys/{id}"),
            &[("confirm", "1")],
        )
        .await;
    assert_eq!(r.status(), 303);
    for stream in [false, true] {
        let r = echo(&api, &b.base, &old, "retired?", stream).await.unwrap();
        assert_eq!(r.status, 401, "B enforces A's retirement at once");
    }
    assert!(ok(echo(&api, &b.base, &new, "new", false).await.unwrap()));

    // A leak report to A: B refuses the reported secret on its next request.
    let report = json!([{"token": new, "type": "lowrouter_api_key",
        "url": "https://example.com/leak", "source": "content"}]);
    let r = api
        .post(a.url("/api/v1/leaked-tokens"))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["label"], "true_positive");
    let r = api
        .post(b.url("/api/v1/chat/completions"))
        .bearer_auth(&new)
        .json(&json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "B enforces A's quarantine at once");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("leaked") && body.contains("https://example.com/leak"),
        "{body}"
    );
}

/// A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in MiB.
pub(crate) fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kb / 1024
}

/// Issue 12, item 5: 96 concurrent sign-ups took RSS from 32 to 1,823 MiB, and it stayed
/// there. Now at most one argon2 run per core exists at once (the rest wait in a short queue
/// or get 503), and each run's 19 MiB goes back to the system when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_bursts_use_bounded_memory_and_give_it_back() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_database(dir.path()).await;
    let server = Server::start(
        dir.path(),
        &db_url,
        "burst",
        &[("LOWROUTER_SIGNUP_MAX_PER_HOUR", "100000")],
    )
    .await;
    let pid = server.pid();
    let idle = memory_mib(pid, "VmRSS:");
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as u64;
    for burst in 0..3 {
        let browsers: Vec<Browser> = (0..96).map(|_| Browser::new(&server)).collect();
        let emails: Vec<String> = (0..96)
            .map(|_| format!("{}@example.com", unique("burst")))
            .collect();
        let fields: Vec<[(&str, &str); 2]> = emails
            .iter()
            .map(|e| [("email", e.as_str()), ("password", PASSWORD)])
            .collect();
        let posts = browsers
            .iter()
            .zip(&fields)
            .map(|(b, f)| b.post_form("/signup", "/signup", f));
        let statuses: Vec<u16> = futures_util::future::join_all(posts)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        assert!(
            statuses.iter().all(|s| *s == 303 || *s == 503),
            "burst {burst}: {statuses:?}"
        );
        assert!(statuses.contains(&303), "burst {burst}: some get through");
        let rss = memory_mib(pid, "VmRSS:");
        assert!(
            rss <= idle + 40,
            "burst {burst}: RSS {rss} MiB after the burst (idle {idle} MiB)"
        );
    }
    let peak = memory_mib(pid, "VmHWM:");
    assert!(
        peak <= idle + 40 + cores * 25,
        "peak RSS {peak} MiB (idle {idle} MiB, {cores} cores)"
    );
}

/// 200 concurrent requests, half on each process, `text` each: how many were answered 200.
pub(crate) async fn hammer_two(
    a: &Server,
    b: &Server,
    token: &str,
    text: &str,
) -> (usize, Vec<u16>) {
    let api = api_client();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let base = if i % 2 == 0 { &a.base } else { &b.base }.clone();
        let (api, token, text) = (api.clone(), token.to_owned(), text.to_owned());
        tasks.push(tokio::spawn(async move {
            echo(&api, &base, &token, &text, i % 4 == 1).await.unwrap()
        }));
    }
    let mut ok = 0;
    let mut refused: Vec<u16> = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 200 {
            assert!(r.complete, "a 200 arrives complete");
            ok += 1;
        } else {
            refused.push(r.status);
        }
    }
    if refused.iter().any(|s| *s >= 500) {
        for s in [a, b] {
            let logs = s.logs();
            let errors: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .collect();
            eprintln!("{} errors and warnings:\n{}", s.base, errors.join("\n"));
        }
    }
    (ok, refused)
}

/// Reads `/credits` on both processes: each gives back its unused lease slices of the
/// account first (PostgreSQL), so the books are at rest afterwards.
pub(crate) async fn settle_both(a: &Server, b: &Server, token: &str) {
    let api = api_client();
    for s in [a, b] {
        let r = api
            .get(s.url("/api/v1/credits"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// Limits, balance and revocation stay exact with budget leases in two processes: a hot key
/// with a small daily limit, then an account with a small balance, each hit by 200 concurrent
/// requests spread over both; then a Delete on one process is refused by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_never_pass_a_limit_or_the_balance() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("skipped: set LOWROUTER_TEST_DATABASE_URL to run two processes on PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_postgres(&admin).await;
    let db = Db(db_url.clone());
    let a = Server::start(dir.path(), &db_url, "lease-a", &[]).await;
    let b = Server::start(dir.path(), &db_url, "lease-b", &[]).await;
    let on_a = Browser::new(&a);
    let email = on_a.signed_up().await;
    let account = db.account_id(&email).await;
    let text = "z".repeat(40); // 0.024 credits each: at most 20 fit in 0.5

    // (1) The daily limit: 0.5 credits.
    let token = on_a.create_key("hot", &[("daily_limit", "0.5")]).await;
    let (ok, refused) = hammer_two(&a, &b, &token, &text).await;
    eprintln!("daily limit over two processes: {ok} answered, refused: {refused:?}");
    assert!(refused.iter().all(|s| *s == 429), "{refused:?}");
    assert!(ok <= 20, "{ok} requests fit where 20 do");
    assert!(ok >= 18, "only {ok} of the 20 that fit were served");
    settle_both(&a, &b, &token).await;
    let key = format!("(select id from api_keys where account_id = {account} and name = 'hot')");
    let spent = db
        .i64(&format!(
            "select cast(coalesce(sum(cost), 0) as bigint) from usage where key_id = {key}"
        ))
        .await;
    assert_eq!(spent, ok as i64 * 24_000, "every answered request charged");
    assert!(spent <= 500_000, "spent {spent} > limit");
    assert_eq!(
        db.i64(&format!("select day_spend from api_keys where id = {key}"))
            .await,
        spent,
        "the key's spend is the sum of its usage rows"
    );
    let books = ledger(&db, account).await;
    assert_eq!(books.reserved, 0, "nothing reserved or leased at rest");
    // Each process adds to rollup rows of its own shard, and the rollups still sum to the
    // raw rows (migration 0019).
    let rollups = |table: &str| {
        format!("(select cast(coalesce(sum(cost), 0) as bigint) from {table} where account_id = {account})")
    };
    assert_eq!(
        db.i64(&format!(
            "select count(distinct shard) from usage_daily where account_id = {account}"
        ))
        .await,
        2,
        "one rollup shard per process"
    );
    assert_eq!(
        db.i64(&format!(
            "select {} - {}",
            rollups("usage_daily"),
            rollups("usage_daily_keys")
        ))
        .await,
        0
    );
    assert_eq!(
        db.i64(&format!("select {}", rollups("usage_daily"))).await,
        books.charged
    );
    // One row per request, but for refusals beyond each process's budget of recorded
    // refusals for the key (gateway::refusals): answered 429, not recorded.
    let budget = i64::from(lowrouter::gateway::refusals::KEY_BURST);
    assert!(
        books.rows >= (ok as i64 + budget).min(200) && books.rows <= 200,
        "{} usage rows for 200 requests ({ok} served)",
        books.rows
    );

    // (2) The balance: 0.3 credits left, no key limit; 12 requests fit.
    let charged = books.charged;
    let rest = 300_000;
    db.i64(&format!(
        "update accounts set balance = {rest} \
         + (select coalesce(sum(charged), 0) from leases where account_id = {account}) \
         where id = {account} returning balance"
    ))
    .await;
    let free = on_a.create_key("free", &[]).await;
    let (ok, refused) = hammer_two(&a, &b, &free, &text).await;
    eprintln!("balance over two processes: {ok} answered, refused: {refused:?}");
    // 402, or 429 beyond each process's budget of recorded refusals for the key.
    assert!(
        refused.iter().all(|s| *s == 402 || *s == 429),
        "{refused:?}"
    );
    assert!((10..=12).contains(&ok), "{ok} requests where 12 fit");
    settle_both(&a, &b, &free).await;
    let books = ledger(&db, account).await;
    assert!(books.balance >= 0);
    assert_eq!(
        books.balance + (books.charged - charged),
        rest,
        "balance + charged = what was there"
    );
    assert_eq!(books.charged - charged, ok as i64 * 24_000);
    assert_eq!(books.reserved, 0);
    // The spent slices' charges may still sit on the lease rows, not yet folded into the
    // account row: what the API reports is net of them, like the books above.
    let credits: Value = api_client()
        .get(a.url("/api/v1/credits"))
        .bearer_auth(&free)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let exact = |micros: i64| format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    assert_eq!(
        credits["data"]["balance"],
        exact(books.balance),
        "{credits}"
    );
    assert_eq!(credits["data"]["reserved"], exact(0), "{credits}");
    assert_eq!(
        db.i64("select count(*) from leases where amount <> 0")
            .await,
        0
    );

    // (3) Delete on B while A holds a lease on the key: A refuses the very next request.
    let on_b = Browser::at(&b.base);
    let cookie = on_a.cookies_seen.lock().unwrap().last().unwrap().clone();
    let api = api_client();
    db.i64(&format!(
        "update accounts set balance = balance + 1000000 where id = {account} returning balance"
    ))
    .await;
    assert!(
        echo(&api, &a.base, &free, "lease", false)
            .await
            .unwrap()
            .complete
    );
    let id = on_a.key_id("free").await;
    let r = on_b
        .client
        .get(b.url(&format!("/keys/{id}/delete")))
        .header("cookie", format!("lowrouter_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "A's session works on B");
    let html = r.text().await.unwrap();
    let csrf = csrf_of(&html);
    let r = on_b
        .client
        .post(b.url(&format!("/keys/{id}/delete")))
        .header("cookie", format!("lowrouter_session={cookie}"))
        .header("origin", &b.base)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "deleted on B");
    for stream in [false, true] {
        let r = echo(&api, &a.base, &free, "deleted?", stream)
            .await
            .unwrap();
        assert_eq!(
            r.status, 401,
            "A refuses a key deleted on B (stream: {stream})"
        );
    }
}
