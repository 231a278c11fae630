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

thread_local! {
    /// The databases this thread's test made: dropped when the thread ends, which is when
    /// its test is over (libtest runs each test on a thread of its own; a multi-threaded
    /// test's runtime workers end with it too).
    static MADE_HERE: std::cell::RefCell<Vec<DropDatabase>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Drops a test database, connections and all, when dropped (`LOWROUTER_TEST_KEEP_DATABASES=1`
/// keeps them, to look into a failure).
struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if std::env::var_os("LOWROUTER_TEST_KEEP_DATABASES").is_some() {
            return;
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Its own thread and runtime: this runs in a thread-local's destructor, outside any
        // runtime, and must not outlive the process.
        let _ = std::thread::spawn(move || drop_databases(&admin, &[name])).join();
    }
}

/// `drop database … with (force)` for each name (PostgreSQL 13+), errors ignored.
fn drop_databases(admin: &str, names: &[String]) {
    use sqlx::Connection;
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        if let Ok(mut c) = sqlx::PgConnection::connect(admin).await {
            for name in names {
                let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut c)
                    .await;
            }
        }
    });
}

/// Once per test process: drops the test databases of earlier runs whose process is gone
/// (a run killed before its tests ended leaves its databases behind). Linux only: it reads
/// `/proc` to know which processes live.
async fn sweep_dead_runs(admin: &str) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    if !cfg!(target_os = "linux") || SWEPT.is_completed() {
        return;
    }
    use sqlx::Connection;
    let Ok(mut c) = sqlx::PgConnection::connect(admin).await else {
        return;
    };
    let names: Vec<String> = sqlx::query_scalar(
        "select datname::text from pg_database where datname like 'lr\\_test\\_%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap_or_default();
    let dead: Vec<String> = names
        .into_iter()
        .filter(|n| {
            n.split('_')
                .nth(2)
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| {
                    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
                })
        })
        .collect();
    drop(c);
    SWEPT.call_once(|| {
        let admin = admin.to_owned();
        let _ = std::thread::spawn(move || drop_databases(&admin, &dead)).join();
    });
}

/// A new, empty PostgreSQL database on `admin`'s server; its URL. It is dropped when the
/// test that made it is over.
pub async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    sweep_dead_runs(admin).await;
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
    MADE_HERE.with(|m| {
        m.borrow_mut().push(DropDatabase {
            admin: admin.to_owned(),
            name: name.clone(),
        })
    });
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

/// Runs statements directly on a test's database (`;`-separated on SQLite, one on
/// PostgreSQL): for what the HTTP surface cannot do (plant a fault, move a clock back).
pub async fn execute_sql(db_url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    if db_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(db_url).await.unwrap();
        c.execute(sql).await.unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(db_url).await.unwrap();
        c.execute(sql).await.unwrap();
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
