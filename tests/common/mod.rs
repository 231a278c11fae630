//! Support shared by the test binaries (tests/api, tests/browser.rs, tests/faults.rs):
//! the app served in-process, a database of its own per test on either backend, and
//! reading forms out of pages.
//! Each binary uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The password every test account signs up with (long, not a common one).
pub const PASSWORD: &str = "Tr0ub4dor&3 horse battery staple";

/// The app, running in this test's runtime.
pub struct Served {
    pub address: String,
    pub port: u16,
    /// The metrics listener's port, when the settings set `metrics_bind`.
    pub metrics_port: Option<u16>,
}

/// Builds the app from `settings` (port 0: a free one) and serves it on the current
/// runtime; `TEST_LOG=1` shows its logs. Every in-process test app starts here.
pub async fn serve(settings: lowrouter::config::Settings) -> Served {
    if std::env::var("TEST_LOG").is_ok() {
        lowrouter::telemetry::init();
    }
    let app = lowrouter::startup::Application::build(settings)
        .await
        .expect("app builds");
    let port = app.port();
    let metrics_port = app.metrics_port();
    tokio::spawn(app.run_until_stopped());
    Served {
        address: format!("http://127.0.0.1:{port}"),
        port,
        metrics_port,
    }
}

/// The PostgreSQL server named by LOWROUTER_TEST_DATABASE_URL, if the run targets one.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("LOWROUTER_TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

/// A new, empty PostgreSQL database on `admin`'s server; its URL.
pub async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "lr_test_{}_{}_{nanos}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("database url has a path");
    format!("{base}/{name}")
}

/// A database of its own for one test: an SQLite file in `dir`, or a new PostgreSQL
/// database when LOWROUTER_TEST_DATABASE_URL names a server.
pub async fn fresh_database(dir: &Path) -> String {
    match postgres_admin_url() {
        Some(admin) => fresh_postgres(&admin).await,
        None => format!("sqlite://{}", dir.join("test.db").display()),
    }
}

/// Text between `start` and the next `end` after it.
pub fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = html.find(start)? + start.len();
    let j = html[i..].find(end)? + i;
    Some(&html[i..j])
}

/// The CSRF token of the first form on a page.
pub fn csrf_of(html: &str) -> String {
    between(html, "name=\"csrf_token\" value=\"", "\"")
        .expect("page has a CSRF token")
        .to_owned()
}

/// The token on the one-time reveal page.
pub fn token_of(html: &str) -> Option<String> {
    between(html, "value=\"lr-sk-", "\"").map(|t| format!("lr-sk-{t}"))
}
