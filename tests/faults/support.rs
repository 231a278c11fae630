//! Support for tests/faults.rs: the real `lowrouter` binary as a child process (so that
//! `kill -9` is real), a cookie-keeping dashboard client, gateway calls that check a
//! response arrived complete, and raw database access on either backend.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use serde_json::{json, Value};

pub use crate::common::{between, csrf_of, fresh_postgres, postgres_admin_url, PASSWORD};

pub const BIN: &str = env!("CARGO_BIN_EXE_lowrouter");
/// Credits granted at sign-up: plenty, so load never runs into the balance.
pub const GRANT_CREDITS: i64 = 100_000;
pub const GRANT_MICROS: i64 = GRANT_CREDITS * 1_000_000;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("faults.db").display())
}

/// SQLite in `dir`, or a fresh PostgreSQL database when LOWROUTER_TEST_DATABASE_URL is set
/// (the same rule as tests/api).
pub async fn fresh_database(dir: &Path) -> String {
    match postgres_admin_url() {
        Some(admin) => fresh_postgres(&admin).await,
        None => sqlite_url(dir),
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One `lowrouter serve` process. Killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Server {
    /// Starts the binary in `dir` (its working directory: no stray lowrouter.toml) with a
    /// clean environment plus `env`, and waits until it answers.
    pub async fn start(dir: &Path, db_url: &str, tag: &str, env: &[(&str, &str)]) -> Server {
        for attempt in 0..5 {
            let port = free_port();
            let stdout = dir.join(format!("{tag}-{attempt}.stdout.log"));
            let stderr = dir.join(format!("{tag}-{attempt}.stderr.log"));
            let mut cmd = Command::new(BIN);
            cmd.current_dir(dir)
                .env_clear()
                .env("LOWROUTER_BIND", format!("127.0.0.1:{port}"))
                .env("LOWROUTER_DATABASE_URL", db_url)
                .env("LOWROUTER_SIGNUP_GRANT", GRANT_CREDITS.to_string())
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(File::create(&stdout).unwrap())
                .stderr(File::create(&stderr).unwrap());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn the lowrouter binary");
            let mut server = Server {
                child: Some(child),
                base: format!("http://127.0.0.1:{port}"),
                stdout,
                stderr,
            };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(logs) if logs.contains("binding") && attempt < 4 => continue, // port race
                Err(logs) => panic!("{tag}: the server did not start:\n{logs}"),
            }
        }
        unreachable!()
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("exited with {status}\n{}", self.logs()));
            }
            if let Ok(r) = client.get(format!("{}/login", self.base)).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(format!("not ready after 60 s\n{}", self.logs()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL: no destructor, no flush, no graceful shutdown.
    /// The process id (to read its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (a `kill -s` name: TERM, INT) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid}");
    }

    /// Waits for the process to exit by itself, for at most `limit`; its exit status.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process wrote to stdout and stderr, ANSI colours removed.
    pub fn logs(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        strip_ansi(&format!("{out}{err}"))
    }
}

/// Runs the binary with `args` in `dir` (the same clean environment as [`Server::start`],
/// listening on any free port) until it exits; panics if it is still running after 60 s.
/// Its exit status, stdout and stderr (ANSI colours removed).
pub async fn run_to_exit(
    dir: &Path,
    db_url: &str,
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let out = dir.join(format!("{}.stdout.log", unique("run")));
    let err = dir.join(format!("{}.stderr.log", unique("run")));
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("LOWROUTER_BIND", "127.0.0.1:0")
        .env("LOWROUTER_DATABASE_URL", db_url)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .expect("spawn the lowrouter binary");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lowrouter {args:?} still running after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let read = |p: &Path| strip_ansi(&std::fs::read_to_string(p).unwrap_or_default());
    (status, read(&out), read(&err))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A person at a browser: keeps cookies, follows no redirects, and remembers every
/// `Set-Cookie` value and CSRF token it was handed (for the secrets-in-logs test).
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub cookies_seen: Mutex<Vec<String>>,
    pub csrf_seen: Mutex<Vec<String>>,
}

impl Browser {
    pub fn new(server: &Server) -> Self {
        Browser::at(&server.base)
    }

    pub fn at(base: &str) -> Self {
        Browser {
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .cookie_store(true)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies_seen: Mutex::new(Vec::new()),
            csrf_seen: Mutex::new(Vec::new()),
        }
    }

    fn note(&self, r: &reqwest::Response) {
        let mut seen = self.cookies_seen.lock().unwrap();
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap_or("");
            let value = c.split(';').next().unwrap_or("");
            if let Some((_, v)) = value.split_once('=') {
                if !v.is_empty() {
                    seen.push(v.to_owned());
                }
            }
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        self.note(&r);
        r
    }

    pub async fn get_html(&self, path: &str) -> String {
        let html = self.get(path).await.text().await.unwrap();
        if let Some(t) = between(&html, "name=\"csrf_token\" value=\"", "\"") {
            self.csrf_seen.lock().unwrap().push(t.to_owned());
        }
        html
    }

    /// POSTs a form with the CSRF token (and form id, if any) of the page at `csrf_from`.
    pub async fn post_form(
        &self,
        path: &str,
        csrf_from: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let page = self.get_html(csrf_from).await;
        let mut body: Vec<(String, String)> = vec![("csrf_token".into(), csrf_of(&page))];
        if let Some(form_id) = between(&page, "name=\"form_id\" value=\"", "\"") {
            body.push(("form_id".into(), form_id.to_owned()));
        }
        body.extend(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .form(&body)
            .send()
            .await
            .unwrap();
        self.note(&r);
        r
    }

    /// Signs up a fresh account (and stays logged in); returns its email.
    pub async fn signed_up(&self) -> String {
        let email = format!("{}@example.com", unique("user"));
        let r = self
            .post_form(
                "/signup",
                "/signup",
                &[("email", email.as_str()), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(r.status(), 303, "sign up redirects");
        email
    }

    /// Creates a key through the New key form; returns its token from the one-time reveal.
    pub async fn create_key(&self, name: &str, extra: &[(&str, &str)]) -> String {
        let mut fields = vec![("name", name)];
        fields.extend_from_slice(extra);
        let r = self.post_form("/keys", "/keys/new", &fields).await;
        assert_eq!(r.status(), 200, "key created");
        let html = r.text().await.unwrap();
        between(&html, "value=\"lr-sk-", "\"")
            .map(|t| format!("lr-sk-{t}"))
            .expect("reveal shows the token")
    }

    /// The dashboard id of the live key called `name` (from its Keys row's link to its page).
    pub async fn key_id(&self, name: &str) -> i64 {
        let html = self.get_html("/keys").await;
        let row_start = html.find(&format!(">{name}</a>")).expect("key listed");
        between(&html[row_start..], "href=\"/keys/", "\"")
            .unwrap()
            .parse()
            .unwrap()
    }

    pub async fn delete_key(&self, id: i64) -> reqwest::Response {
        self.post_form(
            &format!("/keys/{id}/delete"),
            &format!("/keys/{id}/delete"),
            &[],
        )
        .await
    }
}

/// A gateway client without cookies, pooled, with a bound on every request.
pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// What one chat request got back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub generation_id: Option<String>,
    /// Status 200 and the whole body arrived: the JSON completion echoing `text`, or an SSE
    /// stream whose deltas spell `text` and that ends with `data: [DONE]`.
    pub complete: bool,
}

/// `Err` when no HTTP response arrived at all (connection refused or reset).
pub async fn echo(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    text: &str,
    stream: bool,
) -> Result<Reply, reqwest::Error> {
    let body = json!({
        "model": "lowrouter/echo", "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": text}],
    });
    let r = client
        .post(format!("{base}/api/v1/chat/completions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let generation_id = r
        .headers()
        .get("x-lowrouter-generation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A body cut short by a dying server is an error here: not complete.
    let bytes = match r.bytes().await {
        Ok(b) => b,
        Err(_) => {
            return Ok(Reply {
                status,
                generation_id,
                complete: false,
            })
        }
    };
    let complete = status == 200
        && if stream {
            sse_complete(&bytes, text)
        } else {
            serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| {
                v["choices"][0]["message"]["content"] == text
                    && Some(v["id"].as_str().unwrap_or("")) == generation_id.as_deref()
            })
        };
    Ok(Reply {
        status,
        generation_id,
        complete,
    })
}

fn sse_complete(bytes: &[u8], text: &str) -> bool {
    let Ok(body) = std::str::from_utf8(bytes) else {
        return false;
    };
    if !body.ends_with("data: [DONE]\n\n") {
        return false;
    }
    let mut content = String::new();
    for line in body.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            if data == "[DONE]" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                return false;
            };
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                content.push_str(c);
            }
        }
    }
    content == text
}

/// Raw SQL on either backend, for checks the HTTP surface cannot make. Queries are built
/// by the tests from integers they hold; nothing user-supplied.
pub struct Db(pub String);

impl Db {
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres")
    }

    pub async fn i64(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        if self.is_postgres() {
            let mut c = sqlx::PgConnection::connect(&self.0).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.0).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    }

    pub async fn texts(&self, sql: &str) -> Vec<String> {
        use sqlx::Connection;
        if self.is_postgres() {
            let mut c = sqlx::PgConnection::connect(&self.0).await.unwrap();
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.0).await.unwrap();
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    }

    pub async fn account_id(&self, email: &str) -> i64 {
        assert!(email
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.".contains(&b)));
        self.i64(&format!("select id from accounts where email = '{email}'"))
            .await
    }
}

/// Polls `check` every 20 ms until it holds, for at most `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
