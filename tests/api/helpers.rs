//! Test support: spawn the app, a cookie-keeping client, form helpers, a fake upstream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::StreamExt;
use lowrouter::config::Settings;
use reqwest::redirect::Policy;
use serde_json::{json, Value};

pub use crate::common::{between, csrf_of, fresh_database, token_of, PASSWORD};

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// The metrics listener's port, when the test set `metrics_bind`.
    pub metrics_port: Option<u16>,
    pub db_url: String,
    pub client: reqwest::Client,
    pub upstream: Option<FakeUpstream>,
    _dir: tempfile::TempDir,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn is_postgres() -> bool {
    crate::common::postgres_admin_url().is_some()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app; `tweak` adjusts settings. A fake upstream is always started and the
/// test catalogue (tests/fixtures/catalogue.toml with its URL filled in) is used.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    // Once, before any server of this process reads it: other tests' threads then only
    // ever read the environment, never while it is written (`set_var` is not thread-safe).
    static UPSTREAM_KEY: std::sync::Once = std::sync::Once::new();
    UPSTREAM_KEY.call_once(|| std::env::set_var("LOWROUTER_TEST_UPSTREAM_KEY", "sk-upstream-test"));
    let upstream = FakeUpstream::start().await;
    let catalogue = include_str!("../fixtures/catalogue.toml")
        .replace("{UPSTREAM}", &upstream.base_url)
        .replace("{DEAD}", &dead_url());
    let catalogue_path = dir.path().join("catalogue.toml");
    std::fs::write(&catalogue_path, catalogue).unwrap();
    let db_url = fresh_database(dir.path()).await;
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: db_url.clone(),
        catalogue_path: Some(catalogue_path),
        login_max_failures: 5,
        // Many tests sign up several accounts from 127.0.0.1; the throttle's own tests set
        // their limit.
        signup_max_per_hour: 1000,
        upstream_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    tweak(&mut settings);
    let served = crate::common::serve(settings).await;
    TestApp {
        address: served.address,
        port: served.port,
        metrics_port: served.metrics_port,
        db_url,
        client: new_client(),
        upstream: Some(upstream),
        _dir: dir,
    }
}

/// A second server on the same database, as another process would be (PostgreSQL only:
/// SQLite admits one process). Its own client, no upstream of its own (the first's serves).
pub async fn spawn_peer(app: &TestApp) -> TestApp {
    spawn_peer_with(app, |_| {}).await
}

/// [`spawn_peer`], with `tweak` adjusting its settings.
pub async fn spawn_peer_with(app: &TestApp, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: app.db_url.clone(),
        catalogue_path: Some(app._dir.path().join("catalogue.toml")),
        login_max_failures: 5,
        signup_max_per_hour: 1000,
        upstream_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    tweak(&mut settings);
    let served = crate::common::serve(settings).await;
    TestApp {
        address: served.address,
        port: served.port,
        metrics_port: served.metrics_port,
        db_url: app.db_url.clone(),
        client: new_client(),
        upstream: None,
        _dir: tempfile::tempdir().unwrap(),
    }
}

/// A second client (its own cookies) on the same server.
pub fn spawn_clone(app: &TestApp) -> TestApp {
    TestApp {
        address: app.address.clone(),
        port: app.port,
        metrics_port: app.metrics_port,
        db_url: app.db_url.clone(),
        client: new_client(),
        upstream: None,
        _dir: tempfile::tempdir().unwrap(),
    }
}

pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

/// A URL on which nothing listens: connection refused.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

/// Form fields for a key; `extra` adds or overrides.
pub fn key_fields<'a>(name: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
    let mut f: Vec<(&str, String)> = vec![("name", name.to_owned())];
    for (k, v) in extra {
        f.push((k, (*v).to_owned()));
    }
    f
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_html(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// POSTs a form with the CSRF token (and one-time form id, when it has one) of the page
    /// at `csrf_from`.
    pub async fn post_form(
        &self,
        path: &str,
        csrf_from: &str,
        fields: &[(&str, String)],
    ) -> reqwest::Response {
        let body = self.form_body(csrf_from, fields).await;
        self.post_body(path, &body).await
    }

    /// A form's body as the page at `csrf_from` would send it: its CSRF token, its one-time
    /// `form_id` when it has one, then `fields`. Sent twice, it is a reload of the answer.
    pub async fn form_body(
        &self,
        csrf_from: &str,
        fields: &[(&str, String)],
    ) -> Vec<(String, String)> {
        let page = self.get_html(csrf_from).await;
        let mut body: Vec<(String, String)> = vec![("csrf_token".into(), csrf_of(&page))];
        if let Some(form_id) = between(&page, "name=\"form_id\" value=\"", "\"") {
            body.push(("form_id".into(), form_id.to_owned()));
        }
        body.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        body
    }

    /// POSTs a body made by [`TestApp::form_body`].
    pub async fn post_body(&self, path: &str, body: &[(String, String)]) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .form(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn signup(&self, email: &str) -> reqwest::Response {
        self.post_form(
            "/signup",
            "/signup",
            &[("email", email.into()), ("password", PASSWORD.into())],
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_form(
            "/login",
            "/login",
            &[("email", email.into()), ("password", password.into())],
        )
        .await
    }

    pub async fn logout(&self) -> reqwest::Response {
        self.post_form("/logout", "/keys", &[]).await
    }

    /// Signs up a fresh account (and stays logged in).
    pub async fn signed_up(&self) -> String {
        let email = format!("user{}@example.com", COUNTER.fetch_add(1, Ordering::SeqCst));
        let r = self.signup(&email).await;
        assert_eq!(r.status(), 303, "sign up redirects");
        email
    }

    /// Creates a key through the New key form; returns the reveal page's response.
    pub async fn create_key_response(&self, fields: &[(&str, String)]) -> reqwest::Response {
        self.post_form("/keys", "/keys/new", fields).await
    }

    /// Creates a key and returns its token (from the one-time reveal).
    pub async fn create_key(&self, name: &str, extra: &[(&str, &str)]) -> String {
        let r = self.create_key_response(&key_fields(name, extra)).await;
        assert_eq!(r.status(), 200, "key created");
        token_of(&r.text().await.unwrap()).expect("reveal shows the token")
    }

    /// The dashboard id of the key called `name` (from its row's link to the key's page).
    pub async fn key_id(&self, name: &str) -> i64 {
        let html = self.get_html("/keys").await;
        let row_start = html.find(&format!(">{name}</a>")).expect("key listed");
        let row = &html[row_start..];
        // The first link to one of the key's pages (its name, or a badge linking to Edit).
        let to_key = between(row, "href=\"/keys/", "\"").unwrap();
        to_key.split('/').next().unwrap().parse().unwrap()
    }

    /// GETs a gateway path with a key; the JSON body.
    pub async fn api_json(&self, token: &str, path: &str) -> Value {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    pub async fn chat(&self, token: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/chat/completions"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn echo(&self, token: &str, text: &str) -> reqwest::Response {
        self.chat(
            token,
            json!({"model": "lowrouter/echo", "messages": [{"role": "user", "content": text}]}),
        )
        .await
    }

    /// Runs statements directly on the database (`;`-separated on SQLite, one on
    /// PostgreSQL): for planting faults the HTTP surface cannot make.
    pub async fn execute_sql(&self, sql: &str) {
        crate::common::execute_sql(&self.db_url, sql).await
    }

    /// Raw database access for checks the HTTP surface cannot make.
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        if self.db_url.starts_with("postgres") {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut c)
                .await
                .unwrap()
        } else {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    }
}

/// An OpenAI-compatible upstream of our own. Behaviour follows the upstream model name:
/// `ok`, `stream` (SSE, or any model with "stream": true), `bad` (400), `fail` (500),
/// `slow` (sleeps 5 s), `nousage` (no usage object).
pub struct FakeUpstream {
    pub base_url: String,
    pub hits: std::sync::Arc<AtomicUsize>,
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(h.clone()))
                .route("/v1/chat/completions", web::post().to(fake_chat))
                .route("/v1/embeddings", web::post().to(fake_embeddings))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        FakeUpstream {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            hits,
        }
    }
}

/// One three-dimensional vector per input, 3 prompt tokens per input.
async fn fake_embeddings(
    hits: web::Data<std::sync::Arc<AtomicUsize>>,
    body: web::Json<Value>,
) -> HttpResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    let inputs = match &body["input"] {
        Value::Array(items) => items.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.25, -0.5, 0.125]}))
        .collect();
    let tokens = 3 * inputs;
    HttpResponse::Ok().json(
        json!({"object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

async fn fake_chat(
    hits: web::Data<std::sync::Arc<AtomicUsize>>,
    req: actix_web::HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    // Like OpenAI in strict modes: OpenRouter's gateway fields must never reach a provider.
    for field in ["usage", "provider", "transforms", "route", "models"] {
        if body.get(field).is_some() {
            return HttpResponse::BadRequest().json(json!({"error": {
                "message": format!("Unrecognized request argument supplied: {field}"),
                "type": "invalid_request_error", "code": null}}));
        }
    }
    let model = body["model"].as_str().unwrap_or("").to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // 20 completion tokens per choice asked for (`n`).
    let n = body["n"].as_u64().unwrap_or(1);
    let usage =
        json!({"prompt_tokens": 10, "completion_tokens": 20 * n, "total_tokens": 10 + 20 * n});
    match model.as_str() {
        "bad" => HttpResponse::BadRequest().json(json!({"error": {"message": "bad things", "type": "invalid_request_error", "code": "bad_thing"}})),
        "fail" => HttpResponse::InternalServerError().body("boom"),
        // 2 MiB in 64 KiB chunks, no Content-Length: only counting what arrives stops it.
        "huge" => {
            let chunk = web::Bytes::from(vec![b' '; 64 * 1024]);
            let body = futures_util::stream::iter((0..32).map(move |_| Ok::<_, actix_web::Error>(chunk.clone())));
            HttpResponse::Ok().content_type("application/json").streaming(body)
        }
        // A 400 that says it is 2 MiB long.
        "huge-rejected" => HttpResponse::BadRequest().body(vec![b'x'; 2 * 1024 * 1024]),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            HttpResponse::Ok().json(json!({}))
        }
        "unauthorized" | "forbidden" => {
            let status = if model == "forbidden" { 403 } else { 401 };
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(json!({"error": {
                "message": "Incorrect API key provided: sk-upstr***********test.", "type": "invalid_request_error", "code": "invalid_api_key"}}))
        }
        m if m.starts_with("ratelimited-") => HttpResponse::TooManyRequests()
            .insert_header(("retry-after", m.trim_start_matches("ratelimited-")))
            .json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
        "drip" | "stall" => {
            // `drip`: six chunks 400 ms apart; `stall`: one chunk, then silence for 5 s.
            let gaps: Vec<u64> = if model == "drip" { vec![400; 6] } else { vec![0, 5000] };
            let event = web::Bytes::from(format!("data: {}\n\n", json!({"id": "up-1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": "tick "}, "finish_reason": null}]})));
            let events = futures_util::stream::unfold(gaps.into_iter(), move |mut gaps| {
                let event = event.clone();
                async move {
                    let gap = gaps.next()?;
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                    Some((Ok::<_, actix_web::Error>(event), gaps))
                }
            })
            .chain(futures_util::stream::iter([Ok(web::Bytes::from("data: [DONE]\n\n"))]));
            HttpResponse::Ok().content_type("text/event-stream").streaming(events)
        }
        _ if body["stream"] == json!(true) => {
            let include = body["stream_options"]["include_usage"] == json!(true);
            let mut events: Vec<String> = ["Hel", "lo ", "world"]
                .iter()
                .map(|t| format!("data: {}\n\n", json!({"id": "up-1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]})))
                .collect();
            events.push(format!("data: {}\n\n", json!({"id": "up-1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
            if include && model != "nousage" {
                events.push(format!("data: {}\n\n", json!({"id": "up-1", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage})));
            }
            events.push("data: [DONE]\n\n".into());
            let stream = futures_util::stream::iter(events.into_iter().map(|e| Ok::<_, actix_web::Error>(web::Bytes::from(e))));
            HttpResponse::Ok().content_type("text/event-stream").streaming(stream)
        }
        _ => {
            let mut reply = json!({
                "id": "up-1", "object": "chat.completion", "created": 1, "model": model,
                "choices": (0..n).map(|i| json!({"index": i, "message": {"role": "assistant", "content": format!("auth={auth}")}, "finish_reason": "stop"})).collect::<Vec<_>>(),
            });
            if model != "nousage" {
                reply["usage"] = usage;
            }
            HttpResponse::Ok().json(reply)
        }
    }
}

/// A `TestApp` for a server the test built itself (to stop and restart it), on `db_url`,
/// whose files live in `dir`.
pub fn test_app_at(port: u16, db_url: String, dir: tempfile::TempDir) -> TestApp {
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        metrics_port: None,
        db_url,
        client: new_client(),
        upstream: None,
        _dir: dir,
    }
}
