//! Graceful shutdown, request ids in JSON logs.

use super::*;

/// The test catalogue (tests/fixtures) pointing at a fake upstream in this process; its path.
pub(crate) async fn fake_catalogue(dir: &std::path::Path) -> (api_helpers::FakeUpstream, String) {
    let upstream = api_helpers::FakeUpstream::start().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/v1", l.local_addr().unwrap().port())
    };
    let text = include_str!("../fixtures/catalogue.toml")
        .replace("{UPSTREAM}", &upstream.base_url)
        .replace("{DEAD}", &dead);
    let path = dir.join("catalogue.toml");
    std::fs::write(&path, text).unwrap();
    (upstream, path.display().to_string())
}

pub(crate) fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// SIGTERM while a slow stream is mid-way: no new request is served, the stream completes,
/// its usage row is in the database when the process has exited, and the exit code is 0.
/// On the way, in JSON logs, a line written inside a request names its id and generation.
pub(crate) async fn sigterm_mid_stream(db_url: String, dir: &std::path::Path) {
    use futures_util::StreamExt;
    let (_upstream, catalogue) = fake_catalogue(dir).await;
    let env: &[(&str, &str)] = &[
        ("LOWROUTER_CATALOGUE", &catalogue),
        ("LOWROUTER_LOG_FORMAT", "json"),
    ];
    let mut server = Server::start(dir, &db_url, "sigterm", env).await;
    let db = Db(db_url);
    let b = Browser::new(&server);
    b.signed_up().await;
    let token = b.create_key("draining", &[]).await;
    let api = api_client();
    let chat = |model: &str, stream: bool, id: &str| {
        api.post(server.url("/api/v1/chat/completions"))
            .bearer_auth(&token)
            .header("x-request-id", id)
            .json(&serde_json::json!({"model": model, "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };

    // `test/ok` tries a dead provider first: its warning is logged inside the request.
    let r = chat("test/ok", false, "tie-me-42").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id"), "tie-me-42");
    let fallback_generation = header(&r, "x-lowrouter-generation-id");

    let r = chat("test/drip", true, "drip-1").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-request-id"), "drip-1");
    let generation = header(&r, "x-lowrouter-generation-id");
    let mut body = r.bytes_stream();
    let mut got = body.next().await.expect("a first chunk").unwrap().to_vec();

    // The stream is in flight: stop the server.
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(
        fresh.get(server.url("/healthz")).send().await.is_err(),
        "a new connection was served after SIGTERM"
    );
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.expect("the stream is not cut"));
    }
    let text = String::from_utf8(got).unwrap();
    assert_eq!(
        text.matches("tick ").count(),
        6,
        "every chunk arrived:\n{text}"
    );
    assert!(
        text.ends_with("data: [DONE]\n\n"),
        "the stream completed:\n{text}\nserver logs:\n{}",
        server.logs()
    );

    let status = server.wait_exit(Duration::from_secs(40)).await;
    assert!(status.success(), "exit status {status}:\n{}", server.logs());
    // Read after the exit, without a restart (which would replay the SQLite journal).
    let rows = db
        .i64(&format!(
            "select count(*) from usage where generation_id = '{generation}' and status = 'ok' and streamed = 1"
        ))
        .await;
    assert_eq!(rows, 1, "the drained stream's usage row exists");
    assert_eq!(db.i64("select count(*) from reservations").await, 0);

    let logs = server.logs();
    assert!(logs.contains("usage flushed"), "{logs}");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() > 3, "JSON log lines:\n{logs}");
    let fallback = lines
        .iter()
        .find(|l| l["fields"]["message"] == "provider failed; trying the next")
        .unwrap_or_else(|| panic!("no fallback warning:\n{logs}"));
    let span = &fallback["span"];
    assert_eq!(span["name"], "request");
    assert_eq!(span["id"], "tie-me-42", "{fallback}");
    assert_eq!(span["route"], "/api/v1/chat/completions");
    assert_eq!(span["generation_id"], fallback_generation.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_finish_and_loses_no_usage_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sigterm_mid_stream(sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_stream_finish_and_loses_no_usage_on_postgres() {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("skipped: set LOWROUTER_TEST_DATABASE_URL to run on PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    sigterm_mid_stream(fresh_postgres(&admin).await, dir.path()).await;
}

/// Ctrl-C (SIGINT) stops the server the same way: exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_database(dir.path()).await;
    let mut server = Server::start(dir.path(), &db_url, "ctrl-c", &[]).await;
    assert_eq!(
        api_client()
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(40)).await;
    assert!(status.success(), "exit status {status}:\n{}", server.logs());
}
