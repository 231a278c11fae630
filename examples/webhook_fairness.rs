//! The webhook fairness benchmark (security issue, item 2), run by bench/webhook_fairness.sh.
//! Not part of the product.
//!
//! One workspace's endpoint answers after `--slow-secs` (200, as a slow but healthy
//! receiver would) and has `--queued` events waiting; then another workspace presses "Send
//! test event" for its own, prompt, endpoint `--samples` times, and this prints how long
//! each event took from the click to its receiver. The target: under 2 s with 1,000 events
//! queued for a receiver that answers after 9 s.
//!
//! ```text
//! cargo run --example webhook_fairness -- --database-url sqlite:///tmp/fair.db
//! ```
//!
//! The server runs in this process with its defaults (one outbox poll a second, retries
//! from 30 s), but for `webhook_allow_private_targets` (the receivers are on 127.0.0.1).
//! Both workspaces are signed up and their endpoints added through the dashboard, as people
//! would; the queued events are planted in the database in one statement (as if that many
//! alerts had fired: "Send test event" now has a budget), with SQL that needs nothing of
//! this version's API, so the same program measures an older worker too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;
use lowrouter::config::Settings;

#[derive(Parser)]
struct Args {
    /// A fresh database: sqlite://… (made if missing) or postgres://….
    #[arg(long)]
    database_url: String,
    /// Events waiting for the slow endpoint.
    #[arg(long, default_value_t = 1000)]
    queued: usize,
    /// The slow endpoint answers after this many seconds.
    #[arg(long, default_value_t = 9)]
    slow_secs: u64,
    /// Test events the other workspace sends, one at a time, a second apart.
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// How long one test event may take before the run stops waiting.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// A receiver on 127.0.0.1: answers 200 after `delay`, noting when each request arrived
/// and how many it answered at once at most.
#[derive(Clone, Default)]
struct Receiver {
    url: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(delay: Duration) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Receiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            ..Receiver::default()
        };
        let shared = r.clone();
        let server = HttpServer::new(move || {
            let r = shared.clone();
            App::new().default_service(web::to(move || {
                let r = r.clone();
                async move {
                    r.arrivals.lock().unwrap().push(Instant::now());
                    let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    r.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    r.in_flight.fetch_sub(1, Ordering::SeqCst);
                    HttpResponse::Ok().body("ok")
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap();
        tokio::spawn(server.run());
        r
    }

    fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

/// A person in a browser: cookies kept, redirects not followed.
struct Person {
    base: String,
    client: reqwest::Client,
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = html.find(start)? + start.len();
    let j = html[i..].find(end)? + i;
    Some(&html[i..j])
}

impl Person {
    fn new(base: &str) -> Person {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .unwrap();
        Person {
            base: base.to_owned(),
            client,
        }
    }

    async fn page(&self, path: &str) -> String {
        let r = self.client.get(format!("{}{path}", self.base)).send().await;
        r.unwrap().text().await.unwrap()
    }

    /// The form body of the page at `from` (CSRF token, one-time form id) with `fields`.
    async fn form(&self, from: &str, fields: &[(&str, &str)]) -> Vec<(String, String)> {
        let page = self.page(from).await;
        let mut body = vec![(
            "csrf_token".to_owned(),
            between(&page, "name=\"csrf_token\" value=\"", "\"")
                .expect("a form")
                .to_owned(),
        )];
        if let Some(id) = between(&page, "name=\"form_id\" value=\"", "\"") {
            body.push(("form_id".into(), id.into()));
        }
        body.extend(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        body
    }

    async fn post(&self, path: &str, body: &[(String, String)]) -> u16 {
        let r = self.client.post(format!("{}{path}", self.base)).form(body);
        r.send().await.unwrap().status().as_u16()
    }

    /// Signs up, adds an endpoint to `url` for `event`; the endpoint's id.
    async fn with_endpoint(&self, email: &str, url: &str, event: &str) -> i64 {
        let password = "Tr0ub4dor&3 horse battery staple";
        let body = self
            .form("/signup", &[("email", email), ("password", password)])
            .await;
        assert_eq!(self.post("/signup", &body).await, 303, "signed up");
        let body = self
            .form("/alerts/settings", &[("url", url), ("events", event)])
            .await;
        assert_eq!(
            self.post("/alerts/webhooks", &body).await,
            200,
            "endpoint added"
        );
        let page = self.page("/alerts/settings").await;
        between(&page, "action=\"/alerts/webhooks/", "/test\"")
            .expect("the endpoint is listed")
            .parse()
            .unwrap()
    }
}

/// `n` `balance.low` events with their outbox rows for `endpoint`, due now.
async fn plant(url: &str, endpoint: i64, n: usize) {
    use sqlx::{Connection, Executor};
    let now = lowrouter::domain::time_util::now_ms();
    let account = format!("(select account_id from webhook_endpoints where id = {endpoint})");
    let events = format!(
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < {n}) \
         insert into alert_events (public_id, account_id, key_id, kind, dedupe, payload, created_at) \
         select 'evt_bench_' || i, {account}, null, 'balance.low', 'bench:' || i, \
         '{{\"type\": \"balance.low\", \"bench\": ' || i || '}}', {now} from n"
    );
    let rows = format!(
        "insert into webhook_deliveries (endpoint_id, event_id, account_id, next_attempt_at, created_at) \
         select {endpoint}, id, account_id, {now}, {now} from alert_events where dedupe like 'bench:%'"
    );
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        c.execute(events.as_str()).await.unwrap();
        c.execute(rows.as_str()).await.unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        c.execute(events.as_str()).await.unwrap();
        c.execute(rows.as_str()).await.unwrap();
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let slow = Receiver::start(Duration::from_secs(args.slow_secs)).await;
    let prompt = Receiver::start(Duration::ZERO).await;
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: args.database_url.clone(),
        webhook_allow_private_targets: true,
        signup_max_per_hour: 1000,
        ..Settings::default()
    };
    let app = lowrouter::startup::Application::build(settings)
        .await
        .expect("the server starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let flooded = Person::new(&base)
        .with_endpoint("flooded@example.com", &slow.url, "balance.low")
        .await;
    plant(&args.database_url, flooded, args.queued).await;
    let start = Instant::now();
    while slow.in_flight.load(Ordering::SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "nothing sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{} events queued for an endpoint answering after {} s; its first requests are in flight",
        args.queued, args.slow_secs
    );

    let other = Person::new(&base);
    let endpoint = other
        .with_endpoint("other@example.com", &prompt.url, "test")
        .await;
    let mut delays = Vec::new();
    for sample in 1..=args.samples {
        let body = other.form("/alerts/settings", &[]).await;
        let before = prompt.count();
        let clicked = Instant::now();
        let status = other
            .post(&format!("/alerts/webhooks/{endpoint}/test"), &body)
            .await;
        assert_eq!(status, 303, "test event queued");
        let arrived = loop {
            if let Some(at) = prompt.arrivals.lock().unwrap().get(before).copied() {
                break Some(at);
            }
            if clicked.elapsed() > Duration::from_secs(args.timeout_secs) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let Some(at) = arrived else {
            println!(
                "sample {sample}: not delivered within {} s",
                args.timeout_secs
            );
            println!(
                "RESULT other workspace's event: not delivered within {} s",
                args.timeout_secs
            );
            std::process::exit(1);
        };
        let delay = at - clicked;
        println!("sample {sample}: {} ms", delay.as_millis());
        delays.push(delay);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    delays.sort();
    println!(
        "slow endpoint: {} requests so far, at most {} at once",
        slow.count(),
        slow.most.load(Ordering::SeqCst)
    );
    println!(
        "RESULT other workspace's event delivered after {} ms median, {} ms max ({} samples; \
         target < 2000 ms)",
        delays[delays.len() / 2].as_millis(),
        delays[delays.len() - 1].as_millis(),
        delays.len()
    );
}
