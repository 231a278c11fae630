//! Crash: kill -9 under load, restart, check money and records.

use super::*;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Load until `target` complete responses, then SIGKILL mid-load. Returns the generation
/// ids of every response received complete.
pub(crate) async fn load_then_kill(
    server: &mut Server,
    token: &str,
    target: usize,
) -> (Vec<String>, i64) {
    let complete: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (complete, stop) = (complete.clone(), stop.clone());
        let (base, token) = (server.base.clone(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let api = api_client();
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let text = format!("crash test {worker} {n} {}", "x".repeat(n % 50));
                match echo(&api, &base, &token, &text, (worker + n).is_multiple_of(3)).await {
                    Ok(r) if r.complete => {
                        let g = r.generation_id.expect("a generation id on every 200");
                        complete.lock().unwrap().push(g);
                    }
                    Ok(r) => {
                        // Before the kill everything succeeds; after it, bodies are cut.
                        assert!(
                            r.status == 200 || stop.load(Ordering::SeqCst),
                            "status {} before the kill",
                            r.status
                        );
                    }
                    Err(_) => {
                        // Connection refused or reset: the server is gone.
                        if !stop.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
        }));
    }
    let c = complete.clone();
    wait_until(Duration::from_secs(40), "complete responses", || {
        c.lock().unwrap().len() >= target
    })
    .await;
    let killed_at = now_ms();
    server.kill9();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let ids = complete.lock().unwrap().clone();
    (ids, killed_at)
}

pub(crate) struct Ledger {
    pub(crate) balance: i64,
    pub(crate) reserved: i64,
    pub(crate) holds: i64,
    pub(crate) held: i64,
    pub(crate) charged: i64,
    pub(crate) rows: i64,
}

/// The account's books, read by one statement: one snapshot, so a commit the database
/// finishes for a killed process while this reads cannot fall between two figures.
pub(crate) async fn ledger(db: &Db, account: i64) -> Ledger {
    let n = |sql: &str| format!("cast(({sql}) as text)");
    // Charges settled against a lease and not folded into the account row yet (migration
    // 0019) are spent: the account's books net them out, as every reader does.
    let unfolded =
        format!("(select coalesce(sum(charged), 0) from leases where account_id = {account})");
    let figures = [
        n(&format!(
            "select cast(balance - {unfolded} as bigint) from accounts where id = {account}"
        )),
        n(&format!(
            "select cast(reserved - {unfolded} as bigint) from accounts where id = {account}"
        )),
        // Reservation rows and lease rows (PostgreSQL's budget leases: slices held by a
        // process, counted in `reserved` like holds).
        n(&format!(
            "select (select count(*) from reservations where account_id = {account}) \
             + (select count(*) from leases where account_id = {account} and amount <> 0)"
        )),
        n(&format!(
            "select cast(coalesce((select sum(amount) from reservations where account_id = {account}), 0) \
             + coalesce((select sum(amount) from leases where account_id = {account}), 0) as bigint)"
        )),
        n(&format!(
            "select cast(coalesce(sum(cost), 0) as bigint) from usage where account_id = {account}"
        )),
        n(&format!("select count(*) from usage where account_id = {account}")),
    ];
    let row = db
        .texts(&format!("select {}", figures.join(" || ',' || ")))
        .await;
    let v: Vec<i64> = row[0].split(',').map(|x| x.parse().unwrap()).collect();
    Ledger {
        balance: v[0],
        reserved: v[1],
        holds: v[2],
        held: v[3],
        charged: v[4],
        rows: v[5],
    }
}

/// The generation ids of the account's usage rows.
pub(crate) async fn generation_ids(db: &Db, account: i64) -> HashSet<String> {
    db.texts(&format!(
        "select generation_id from usage where account_id = {account}"
    ))
    .await
    .into_iter()
    .collect()
}

/// The books balance: what was charged left the balance, and `reserved` is exactly the
/// sum of the live holds and leased slices.
pub(crate) fn assert_books(l: &Ledger, what: &str) {
    assert_eq!(
        l.balance + l.charged,
        GRANT_MICROS,
        "{what}: balance + charged = grant"
    );
    assert_eq!(l.reserved, l.held, "{what}: reserved = sum of live holds");
    assert!(l.balance >= 0 && l.reserved >= 0);
}

pub(crate) async fn crash_and_restart(db_url: String, dir: &std::path::Path) {
    let env: &[(&str, &str)] = &[("LOWROUTER_UPSTREAM_TIMEOUT_SECS", "1")];
    let mut server = Server::start(dir, &db_url, "crash-1", env).await;
    let db = Db(db_url.clone());
    let b = Browser::new(&server);
    let email = b.signed_up().await;
    let token = b.create_key("crashy", &[("daily_limit", "50000")]).await;
    let account = db.account_id(&email).await;

    let (complete, _killed_at) = load_then_kill(&mut server, &token, 300).await;
    assert!(complete.len() >= 300);
    let after_kill = ledger(&db, account).await;
    eprintln!(
        "crash ({}): {} complete responses before kill -9; {} usage rows, {} holds left by the dead process",
        if db.is_postgres() { "postgres" } else { "sqlite" },
        complete.len(),
        after_kill.rows,
        after_kill.holds
    );
    // Even before restart, the books balance and every complete response is recorded.
    assert_books(&after_kill, "after kill -9");
    assert!(
        after_kill.holds <= 16,
        "at most one hold per in-flight request"
    );

    // SQLite: the last answered requests may be only in the usage journal yet; the restart
    // applies them before serving.
    let in_db_at_kill = generation_ids(&db, account).await;
    eprintln!(
        "{} complete responses were not yet in the database at the kill",
        complete
            .iter()
            .filter(|g| !in_db_at_kill.contains(*g))
            .count()
    );

    let server = Server::start(dir, &db_url, "crash-2", env).await;
    let recorded = generation_ids(&db, account).await;
    let lost: Vec<_> = complete.iter().filter(|g| !recorded.contains(*g)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} complete responses have no usage row, e.g. {:?}",
        lost.len(),
        complete.len(),
        lost.first()
    );
    // The same through the API, for a sample.
    let api = api_client();
    for g in complete.iter().step_by(complete.len() / 10) {
        let r = api
            .get(server.url(&format!("/api/v1/generation/{g}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET /api/v1/generation/{g}");
    }

    // SQLite: holds lived in the killed process's memory. PostgreSQL: the restarted process
    // finds the killed one's liveness lock free and releases its holds at start.
    let swept = ledger(&db, account).await;
    assert_eq!(swept.holds, 0, "no reservation left hanging");
    assert_eq!(swept.reserved, 0, "nothing reserved at rest");
    assert_books(&swept, "after the sweep");
    assert_eq!(
        db.i64("select count(*) from reservations").await,
        0,
        "reservations table is empty"
    );
    // The key's counters agree with its usage when the whole run was within one UTC day.
    let day = db
        .i64(&format!(
            "select spend_day from api_keys where account_id = {account}"
        ))
        .await;
    let days = db
        .i64(&format!(
            "select count(distinct started_at / 86400000) from usage where account_id = {account}"
        ))
        .await;
    if days == 1 && day == now_ms() / 86_400_000 {
        let spent = db
            .i64(&format!(
                "select day_spend from api_keys where account_id = {account}"
            ))
            .await;
        assert_eq!(spent, swept.charged, "day_spend = charged");
    }

    // The restarted service serves and settles normally.
    let r = echo(&api, &server.base, &token, "after restart", true)
        .await
        .unwrap();
    assert!(r.complete);
    let r = echo(&api, &server.base, &token, "after restart", false)
        .await
        .unwrap();
    assert!(r.complete);
    // A read through the API waits until every answered request is in the database.
    let r = api
        .get(server.url("/api/v1/credits"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let end = ledger(&db, account).await;
    assert_books(&end, "after new requests");
    assert_eq!(end.holds, 0);

    if !db.is_postgres() {
        let check = db.texts("pragma integrity_check").await;
        assert_eq!(check, vec!["ok".to_owned()], "integrity_check");
        let fk = db.texts("pragma foreign_key_check").await;
        assert!(fk.is_empty(), "foreign_key_check: {fk:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_under_load_loses_no_record_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    crash_and_restart(sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_under_load_loses_no_record_on_postgres() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("skipped: set LOWROUTER_TEST_DATABASE_URL to run on PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    crash_and_restart(fresh_postgres(&admin).await, dir.path()).await;
}
