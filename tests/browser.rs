//! Real-browser tests: the dashboard driven through headless Chromium (chromedriver driven
//! with fantoccini), with JavaScript on and off, plus screenshots of the main pages at desktop
//! and phone widths under `target/screenshots/`.
//!
//! Needs Chromium and chromedriver (`apt-get install chromium chromium-driver`; other paths
//! through `LOWROUTER_CHROMIUM` / `LOWROUTER_CHROMEDRIVER`). Without them each test prints a
//! message and passes, unless `LOWROUTER_REQUIRE_BROWSER=1` (CI), which makes it fail.
//! Like the API suite, it runs on PostgreSQL when `LOWROUTER_TEST_DATABASE_URL` names a server.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use lowrouter::config::Settings;
use serde_json::{json, Value};

mod common;
use common::{fresh_database, PASSWORD};

const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One browser at a time: the machines running this have few cores, and several Chromiums
/// at once make timing flaky without testing anything more.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------

struct BrowserPaths {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The browser binaries, or `None` (with a message) when they are missing and not required.
fn browser_paths() -> Option<BrowserPaths> {
    let chromium = find_binary(
        "LOWROUTER_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let chromedriver = find_binary("LOWROUTER_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Some(BrowserPaths {
            chromium,
            chromedriver,
        }),
        _ => {
            let msg = "Chromium and chromedriver are needed for the browser tests \
                       (apt-get install chromium chromium-driver)";
            if std::env::var("LOWROUTER_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("{msg}, and LOWROUTER_REQUIRE_BROWSER=1");
            }
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver, in a process group of its own so that the Chromium it starts goes too.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        use std::os::unix::process::CommandExt as _;
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Browser {
    client: Client,
    base: String,
    js: bool,
    _driver: Driver,
}

async fn open_browser(paths: &BrowserPaths, base: &str, js: bool) -> Browser {
    use std::os::unix::process::CommandExt as _;
    let port = free_port();
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(&paths.chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        "--disable-quic".into(),
        "--hide-scrollbars".into(),
        "--force-device-scale-factor=1".into(),
        format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
        format!("--user-data-dir={}", driver._profile.path().display()),
    ];
    let mut chrome = json!({ "binary": paths.chromium, "args": [] });
    if !js {
        args.push("--blink-settings=scriptEnabled=false".into());
        chrome["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    chrome["args"] = json!(args);
    let caps = json!({ "browserName": "chrome", "goog:chromeOptions": chrome });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    let client = ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("WebDriver session");
    client
        .set_window_size(DESKTOP.0, DESKTOP.1)
        .await
        .expect("window size");
    Browser {
        client,
        base: base.to_owned(),
        js,
        _driver: driver,
    }
}

impl Browser {
    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// The path (and query) of the current page.
    async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => el,
            Err(e) => self.fail(&format!("no element {css}: {e}")).await,
        }
    }

    /// Panics with `msg`, leaving the page's source and a screenshot for the post-mortem.
    async fn fail(&self, msg: &str) -> ! {
        let dir = screenshot_dir();
        let path = self.path().await;
        if let Ok(src) = self.client.source().await {
            let _ = std::fs::write(dir.join("failure.html"), src);
        }
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(dir.join("failure.png"), png);
        }
        panic!("{msg} (on {path}; see target/screenshots/failure.html and failure.png)");
    }

    /// Finds and clicks. A page that was still being replaced when the element was found
    /// makes it stale: then it is found again on the new page (a few times at most).
    async fn click(&self, css: &str) {
        for attempt in 1.. {
            match self.find(css).await.click().await {
                Ok(_) => return,
                Err(e) if attempt < 3 && e.to_string().contains("stale element") => continue,
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Clicks the link or button whose visible text is exactly `text`.
    async fn click_text(&self, text: &str) {
        let xpath =
            format!("//a[normalize-space()='{text}'] | //button[normalize-space()='{text}']");
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no link or button \"{text}\": {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click \"{text}\": {e}"));
    }

    /// Clicks the link or button labelled exactly `label` in the table row that names
    /// `row` (a key's name, as a link): "the key's row → Delete".
    async fn click_in_row(&self, row: &str, label: &str) {
        let xpath = format!(
            "//tr[.//a[normalize-space()='{row}']]//*[self::a or self::button][normalize-space()='{label}']"
        );
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no \"{label}\" in the row of {row}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click \"{label}\" in the row of {row}: {e}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// The element's text. An element found just before a navigation replaced the page is
    /// stale: it is looked up again, for up to ten seconds.
    async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.find(css).await.text().await {
                Ok(t) => return t,
                Err(e) => assert!(Instant::now() < deadline, "text of {css}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's heading is `expected` (after a click whose answer is a
    /// redirect, the old page can still be there for a moment).
    async fn wait_h1(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.h1().await;
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "heading {now:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the current path is `path` (navigation after a click can lag).
    async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected to be on {path}, still on {now}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn h1(&self) -> String {
        self.text("h1").await
    }

    async fn close(self) {
        let Browser {
            client,
            _driver: driver,
            ..
        } = self;
        let _ = client.close().await;
        drop(driver);
    }
}

// ---------------------------------------------------------------------------------------
// The app (the minimal part of tests/api/helpers.rs)
// ---------------------------------------------------------------------------------------

struct TestApp {
    address: String,
    http: reqwest::Client,
    db_url: String,
    _dir: tempfile::TempDir,
}

/// The real app on a free port with a fresh database and the built-in catalogue.
async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The same, with `tweak` applied to the settings.
async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_database(dir.path()).await;
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: db_url.clone(),
        catalogue_path: None,
        ..Settings::default()
    };
    tweak(&mut settings);
    TestApp {
        address: common::serve(settings).await.address,
        http: reqwest::Client::new(),
        db_url,
        _dir: dir,
    }
}

impl TestApp {
    /// Runs one statement on the app's database: for moving a secret's clock back instead of
    /// waiting.
    async fn execute_sql(&self, sql: &str) {
        common::execute_sql(&self.db_url, sql).await
    }

    async fn chat(&self, token: &str, model: &str, text: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/chat/completions", self.address))
            .bearer_auth(token)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Steps a person takes
// ---------------------------------------------------------------------------------------

async fn sign_up(b: &Browser) -> String {
    let email = format!(
        "person{}@example.com",
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    b.goto("/signup").await;
    b.fill("#email", &email).await;
    b.fill("#password", PASSWORD).await;
    b.click_text("Create account").await;
    b.wait_path("/keys").await;
    assert_eq!(b.h1().await, "API keys");
    email
}

struct NewKey<'a> {
    name: &'a str,
    models: &'a [&'a str],
    region: &'a str,
    daily_limit: &'a str,
}

/// From the Keys page: New key, fill in, Create. Returns the token from the reveal page.
async fn create_key(b: &Browser, key: &NewKey<'_>) -> String {
    b.click_text("New key").await;
    b.wait_path("/keys/new").await;
    b.fill("#name", key.name).await;
    if !key.models.is_empty() {
        // Models fold away until chosen (a <details>, closed on a new key).
        b.click("details.models-section > summary").await;
    }
    for m in key.models {
        let boxed = b.find(&format!("input[name=models][value='{m}']")).await;
        boxed.click().await.unwrap();
        assert!(boxed.is_selected().await.unwrap(), "{m} ticked");
    }
    if !key.region.is_empty() {
        b.find("#region")
            .await
            .select_by_value(key.region)
            .await
            .unwrap();
    }
    b.fill("#daily_limit", key.daily_limit).await;
    b.click_text("Create").await;
    let token = b
        .find("input#token[readonly]")
        .await
        .prop("value")
        .await
        .unwrap()
        .expect("the reveal page shows the token");
    assert!(
        token.starts_with("lr-sk-") && token.len() == 55,
        "a token: {token}"
    );
    assert!(
        b.h1().await.contains(key.name),
        "the reveal page names the key"
    );
    assert!(!b.url().await.contains(&token), "the token is in no URL");
    token
}

/// Opens Usage and waits (reloading, as a person would) until a row for `key_name` shows.
async fn see_usage_of(b: &Browser, key_name: &str) {
    b.click("nav[aria-label=Main] a[href='/usage']").await;
    b.wait_path("/usage").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = b
            .client
            .find_all(Locator::Css("table.usage td.name"))
            .await
            .unwrap();
        let mut found = false;
        for n in names {
            if n.text().await.unwrap().trim() == key_name {
                found = true;
            }
        }
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Usage never showed a request by {key_name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.client.refresh().await.unwrap();
    }
}

/// The whole journey of the product page: sign up, create a scoped key, use it, see it in
/// Usage, delete it, and the token stops working.
async fn journey(js: bool) {
    let Some(paths) = browser_paths() else { return };
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app().await;
    let b = open_browser(&paths, &app.address, js).await;
    let name = if js { "prod-server" } else { "no-js-server" };

    sign_up(&b).await;
    assert!(b.source().await.contains("No API keys yet"));
    let token = create_key(
        &b,
        &NewKey {
            name,
            models: &["lowrouter/echo", "openai/gpt-4o"],
            region: "eu-west",
            daily_limit: "1.00",
        },
    )
    .await;
    // The copy button is added by app.js: proof of which mode this browser is in.
    let copy = b.find("button[data-copy]").await;
    assert_eq!(
        copy.is_displayed().await.unwrap(),
        b.js,
        "the Copy button shows exactly when JavaScript runs"
    );

    let r = app
        .chat(&token, "lowrouter/echo", "Hello from a browser test")
        .await;
    assert_eq!(r.status(), 200, "the new key works");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from a browser test"
    );
    let r = app.chat(&token, "anthropic/claude-sonnet-4-5", "hi").await;
    assert_eq!(r.status(), 403, "the model scope holds");

    see_usage_of(&b, name).await;

    b.click("nav[aria-label=Main] a[href='/keys']").await;
    b.wait_path("/keys").await;
    let row = b.text("table.keys tbody tr").await;
    assert!(row.contains(name), "{row}");
    assert!(row.contains("lowrouter/echo, openai/gpt-4o"), "{row}");
    assert!(row.contains("eu-west"), "{row}");
    assert!(row.contains("0.018 of 1.00 today"), "{row}");
    assert!(
        !b.source().await.contains(&token),
        "the list never shows the token"
    );

    // Revoke as the docs say it, word for word and by visible labels only:
    // "Dashboard → Keys → Delete".
    b.click_text("Keys").await;
    b.wait_path("/keys").await;
    b.click_in_row(name, "Delete").await;
    assert_eq!(b.h1().await, format!("Delete “{name}”?"));
    assert!(
        b.source().await.contains("Disable instead"),
        "Delete offers to disable instead"
    );
    b.click_text("Delete key").await;
    b.wait_path("/keys").await;
    assert!(b.source().await.contains("Revoked keys (1)"));

    let r = app.chat(&token, "lowrouter/echo", "still there?").await;
    assert_eq!(r.status(), 401, "a deleted key stops working at once");
    b.close().await;
}

/// Roll from the Keys page while a load generator keeps using the old secret, then switches
/// to the new one: no request fails during the switch. With nothing sent with the old
/// secret any more, it retires once its quiet period (3 s here) has passed.
#[tokio::test]
async fn roll_under_load_fails_no_request_then_the_old_secret_retires_when_quiet() {
    use std::sync::{Arc, Mutex};
    let Some(paths) = browser_paths() else { return };
    let _one = ONE_BROWSER.lock().await;
    let app = Arc::new(spawn_app().await);
    let b = open_browser(&paths, &app.address, true).await;
    sign_up(&b).await;
    let key = NewKey {
        name: "rolling",
        models: &[],
        region: "",
        daily_limit: "",
    };
    let old = create_key(&b, &key).await;
    b.click_text("I have copied it — back to keys").await;
    b.wait_path("/keys").await;

    // The load generator: one request after another with whichever secret is current.
    let current = Arc::new(Mutex::new(old.clone()));
    let served = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (app, current, served, failed, stop) = (
            app.clone(),
            current.clone(),
            served.clone(),
            failed.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let token = current.lock().unwrap().clone();
                let status = app.chat(&token, "lowrouter/echo", "load").await.status();
                if status == 200 {
                    served.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.lock().unwrap().push(status.as_u16());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let wait_served = |n: usize| {
        let served = served.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while served.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "the load generator stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_served(5).await;

    b.click("a[aria-label^='Manage rolling']").await;
    b.click_text("Roll").await;
    b.wait_h1("Roll “rolling”").await;
    b.fill("input[name=quiet_minutes]", "0.05").await;
    b.click_text("Roll").await;
    let new = b
        .find("input#token[readonly]")
        .await
        .prop("value")
        .await
        .unwrap()
        .expect("the reveal page shows the new secret");
    assert_ne!(new, old);
    assert!(b.h1().await.contains("New secret for"));
    // The old secret still serves after the roll; then the clients switch.
    let n = served.load(Ordering::SeqCst);
    wait_served(n + 5).await;
    *current.lock().unwrap() = new.clone();
    let n = served.load(Ordering::SeqCst);
    wait_served(n + 5).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert_eq!(
        *failed.lock().unwrap(),
        Vec::<u16>::new(),
        "no request failed during the roll"
    );

    // Traffic on the old secret stopped: it retires once its quiet period (3 s) has passed.
    // The secret's clock is moved back past it rather than waited for (a request to check
    // sooner would be traffic, and would keep it alive).
    // `/api/v1/key` waits until every answered request's usage (and last use) is written.
    app.http
        .get(format!("{}/api/v1/key", app.address))
        .bearer_auth(&new)
        .send()
        .await
        .unwrap();
    app.execute_sql(&format!(
        "update key_secrets set rolled_at = rolled_at - 10000, last_used_at = last_used_at - 10000 \
         where token_last4 = '{}'",
        &old[old.len() - 4..]
    ))
    .await;
    let r = app.chat(&old, "lowrouter/echo", "old?").await;
    assert_eq!(r.status(), 401, "the old secret retired once quiet");
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("rotated"), "{message}");
    assert_eq!(app.chat(&new, "lowrouter/echo", "new").await.status(), 200);
    b.click_text("I have copied it — back to keys").await;
    b.wait_path("/keys").await;
    b.click("a[aria-label^='Manage rolling']").await;
    let page = b.source().await;
    assert!(
        page.contains(&format!("…{}", &new[51..])),
        "the current secret is listed"
    );
    assert!(
        !page.contains(&format!("…{}", &old[51..])),
        "the retired one is not"
    );
    b.close().await;
}

#[tokio::test]
async fn journey_sign_up_create_use_see_usage_delete() {
    journey(true).await;
}

#[tokio::test]
async fn journey_works_without_javascript() {
    journey(false).await;
}

#[tokio::test]
async fn back_forward_and_reload_never_show_the_token_again() {
    let Some(paths) = browser_paths() else { return };
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app().await;
    let b = open_browser(&paths, &app.address, true).await;
    let mut urls = Vec::new();

    sign_up(&b).await;
    urls.push(b.url().await);
    let token = create_key(
        &b,
        &NewKey {
            name: "history-test",
            models: &[],
            region: "",
            daily_limit: "",
        },
    )
    .await;
    urls.push(b.url().await);
    let secret_part = &token["lr-sk-".len()..];

    let assert_hidden = |src: String, when: &str| {
        assert!(
            !src.contains(secret_part),
            "the token is shown again after {when}"
        );
    };

    // Reload the reveal page: a re-submitted Create shows nothing (and creates nothing).
    b.client.refresh().await.unwrap();
    urls.push(b.url().await);
    assert_hidden(b.source().await, "reload");

    b.goto("/keys").await;
    urls.push(b.url().await);
    assert_hidden(b.source().await, "opening Keys");
    assert_eq!(
        b.client
            .find_all(Locator::Css("table.keys tbody tr"))
            .await
            .unwrap()
            .len(),
        1,
        "the reload created no second key"
    );

    // Back to the reveal page (a POST answer marked no-store), forward, reload, again.
    for step in [
        "back", "forward", "back", "reload", "back", "forward", "reload",
    ] {
        match step {
            "back" => b.client.back().await.unwrap(),
            "forward" => b.client.forward().await.unwrap(),
            _ => b.client.refresh().await.unwrap(),
        }
        urls.push(b.url().await);
        assert_hidden(b.source().await, step);
    }

    // A fresh key, then straight Back and Forward from its reveal page.
    b.goto("/keys").await;
    let token2 = create_key(
        &b,
        &NewKey {
            name: "history-test-2",
            models: &[],
            region: "",
            daily_limit: "",
        },
    )
    .await;
    urls.push(b.url().await);
    b.client.back().await.unwrap();
    urls.push(b.url().await);
    b.client.forward().await.unwrap();
    urls.push(b.url().await);
    let src = b.source().await;
    assert!(
        !src.contains(&token2["lr-sk-".len()..]),
        "Forward shows the second token again"
    );

    // The session history as the page sees it has no token in it either.
    let history_len = b
        .client
        .execute("return history.length", vec![])
        .await
        .unwrap();
    assert!(history_len.as_u64().unwrap() >= 3);
    for u in &urls {
        assert!(!u.contains("lr-sk-"), "a URL holds a token: {u}");
        assert!(!u.contains(secret_part), "a URL holds the token: {u}");
    }
    b.close().await;
}

/// Keys → the key's row → Roll → Roll shows the new secret once. Reloading that page makes
/// the browser send the POST again: nothing is rolled a second time, the key's page says
/// "Already done", and the secret copied from the first answer keeps working. Then the
/// row's Disable and Enable, which the alert settings page points to.
#[tokio::test]
async fn a_reloaded_roll_keeps_the_copied_secret_and_the_row_disables_and_enables() {
    let Some(paths) = browser_paths() else { return };
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app().await;
    let b = open_browser(&paths, &app.address, false).await;
    sign_up(&b).await;
    let key = NewKey {
        name: "roller",
        models: &[],
        region: "",
        daily_limit: "",
    };
    let old = create_key(&b, &key).await;
    b.click_text("Keys").await;
    b.wait_path("/keys").await;
    b.click_in_row("roller", "Roll").await;
    b.wait_h1("Roll “roller”").await;
    b.click("form[action$='/roll'] button[type=submit]").await;
    let new = b
        .find("input#token[readonly]")
        .await
        .prop("value")
        .await
        .unwrap()
        .expect("the reveal shows the new secret");
    assert_ne!(new, old);
    assert!(b
        .client
        .title()
        .await
        .unwrap()
        .starts_with("New secret for roller"));

    b.client.refresh().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.source().await.contains("Already done") {
        assert!(
            Instant::now() < deadline,
            "a reload of the reveal says Already done"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = b.source().await;
    assert!(
        !page.contains(&new["lr-sk-".len()..]),
        "the secret is not shown again"
    );
    assert!(page.contains(&format!("…{}", &new[new.len() - 4..])));
    assert_eq!(b.h1().await, "roller", "on the key's page");
    let r = app.chat(&new, "lowrouter/echo", "after a reload").await;
    assert_eq!(r.status(), 200, "the copied secret still works");

    b.click_text("Keys").await;
    b.wait_path("/keys").await;
    // It served a request a moment ago: Disable asks first.
    b.click_in_row("roller", "Disable").await;
    b.wait_h1("Disable “roller”?").await;
    b.click_text("Disable key").await;
    b.wait_path("/keys").await;
    assert!(b.source().await.contains("“roller” is disabled."));
    assert_eq!(app.chat(&new, "lowrouter/echo", "off").await.status(), 401);
    b.click_in_row("roller", "Enable").await;
    b.wait_path("/keys").await;
    assert!(b.source().await.contains("“roller” is enabled."));
    assert_eq!(app.chat(&new, "lowrouter/echo", "on").await.status(), 200);
    b.close().await;
}

// ---------------------------------------------------------------------------------------
// Screenshots
// ---------------------------------------------------------------------------------------

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Widths of the screenshots (phone, small laptop, desktop), each shot full page.
const SHOT_WIDTHS: [u32; 3] = [390, 1024, 1440];
/// Widths at which nothing may overflow: the screenshot widths and the narrowest phone.
const CHECK_WIDTHS: [u32; 4] = [320, 390, 1024, 1440];

/// Every visible element that sticks out of its parent's box sideways, or that scrolls
/// sideways itself (content hidden behind a scrollbar counts as cut off), described as
/// `tag.class "text" by Npx`. Skipped: the visually hidden (`.sr-only`, the skip link until
/// focused) and SVG internals (the chart's own geometry).
const OVERFLOW_JS: &str = r#"
const out = [];
const describe = (e, d) => {
  const cls = typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\s+/).join('.') : '';
  const text = (e.innerText || e.value || '').trim().replace(/\s+/g, ' ').slice(0, 40);
  return `${e.tagName.toLowerCase()}${cls} "${text}" by ${Math.round(d)}px`;
};
for (const e of document.body.querySelectorAll('*')) {
  if (e.closest('.sr-only, .skip, svg *, head, script, noscript, datalist, option')) continue;
  const cs = getComputedStyle(e);
  if (cs.display === 'none' || cs.visibility === 'hidden') continue;
  const r = e.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  const p = e.parentElement;
  if (cs.position === 'absolute' || cs.position === 'fixed') {
    // A dropdown (the phone Menu's panel) is placed out of its container on purpose: it
    // must fit the window instead.
    const d = Math.max(r.right - window.innerWidth, -r.left);
    if (d > 1) out.push('sticks out of the window: ' + describe(e, d));
  } else if (p && p !== document.body && p !== document.documentElement) {
    const pr = p.getBoundingClientRect();
    const d = Math.max(r.right - pr.right, pr.left - r.left);
    if (d > 1) out.push('sticks out of ' + p.tagName.toLowerCase() + ': ' + describe(e, d));
  }
  const scrolls = e.scrollWidth - e.clientWidth;
  if (scrolls > 1 && e.tagName !== 'INPUT' && e.tagName !== 'HTML' && e.tagName !== 'BODY'
      && cs.overflowX !== 'visible') {
    out.push('scrolls sideways: ' + describe(e, scrolls));
  }
}
const page = document.documentElement.scrollWidth - window.innerWidth;
if (page > 0) out.push('the page scrolls sideways by ' + page + 'px');
return out;
"#;

/// axe-core from npm (`tests/a11y`, `npm ci --prefix tests/a11y`), read once.
fn axe_source() -> Option<&'static str> {
    static AXE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/a11y/node_modules/axe-core/axe.min.js");
        let src = std::fs::read_to_string(&path).ok();
        if src.is_none() && std::env::var_os("LOWROUTER_REQUIRE_BROWSER").is_some() {
            panic!(
                "{} is missing: run `npm ci --prefix tests/a11y`",
                path.display()
            );
        }
        src
    })
    .as_deref()
}

/// Runs axe-core on the current page at WCAG 2.2 AA (and the A and AA rules before it):
/// every violation as `rule: target (summary)`. axe is injected through WebDriver's execute
/// script, which the page's Content-Security-Policy does not govern: the page itself stays
/// exactly as served.
async fn axe_violations(b: &Browser) -> Vec<String> {
    let Some(axe) = axe_source() else {
        eprintln!("axe-core not installed (npm ci --prefix tests/a11y): accessibility not checked");
        return Vec::new();
    };
    let loaded = b
        .client
        .execute("return typeof axe !== 'undefined'", vec![])
        .await
        .unwrap();
    if loaded != Value::Bool(true) {
        b.client
            .execute(&format!("{axe}\n;return true;"), vec![])
            .await
            .expect("inject axe-core");
    }
    const RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { runOnly: { type: 'tag',
    values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } })
  .then(r => done(r.violations.flatMap(v => v.nodes.map(n =>
      v.id + ': ' + n.target.join(' ') + ' (' + (n.failureSummary || '').replace(/\s+/g, ' ').slice(0, 200) + ')'))),
        e => done(['axe failed: ' + e]));
"#;
    let found = b.client.execute_async(RUN, vec![]).await.unwrap();
    found
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Full-page screenshots of the current page at [`SHOT_WIDTHS`], without reloading it, as
/// `target/screenshots/{name}-{width}.png`, each width also checked by axe-core (WCAG 2.2
/// AA, zero violations) when the browser runs scripts. With `check_overflow`, also checks at
/// [`CHECK_WIDTHS`] that nothing overflows its container sideways; every page is checked
/// never to scroll sideways.
async fn shoot(b: &Browser, name: &str, check_overflow: bool, problems: &mut Vec<String>) {
    let dir = screenshot_dir();
    for w in CHECK_WIDTHS {
        let h = if w < 800 { PHONE.1 } else { DESKTOP.1 };
        set_viewport(b, w, h).await;
        let inner = b
            .client
            .execute("return window.innerWidth", vec![])
            .await
            .unwrap();
        assert_eq!(inner.as_u64(), Some(u64::from(w)), "viewport width");
        if check_overflow {
            let found = b.client.execute(OVERFLOW_JS, vec![]).await.unwrap();
            for f in found.as_array().into_iter().flatten() {
                problems.push(format!("{name} at {w}px: {}", f.as_str().unwrap_or("?")));
            }
        } else {
            let overflow = b
                .client
                .execute(
                    "return document.documentElement.scrollWidth - window.innerWidth",
                    vec![],
                )
                .await
                .unwrap();
            if overflow.as_i64().unwrap() > 0 {
                problems.push(format!(
                    "{name} scrolls sideways by {overflow}px at {w}px wide"
                ));
            }
        }
        if w == PHONE.0 {
            // Phones: the bar is one line (brand, balance, Menu), not a third of the screen.
            let header = b
                .client
                .execute(
                    "return document.querySelector('header.topbar')?.getBoundingClientRect().height ?? 0",
                    vec![],
                )
                .await
                .unwrap()
                .as_f64()
                .unwrap_or(0.0);
            if header > 120.0 {
                problems.push(format!("{name} at {w}px: the header is {header}px tall"));
            }
        }
        if !SHOT_WIDTHS.contains(&w) {
            continue;
        }
        if b.js {
            for v in axe_violations(b).await {
                problems.push(format!("{name} at {w}px, axe: {v}"));
            }
        }
        let full = b
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap() as u32;
        set_viewport(b, w, full.max(h)).await;
        let png = b.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}-{w}.png")), png).unwrap();
    }
    set_viewport(b, DESKTOP.0, DESKTOP.1).await;
}

/// Sizes the window so that the page itself (not the window) is `w` x `h` pixels.
async fn set_viewport(b: &Browser, w: u32, h: u32) {
    b.client.set_window_size(w, h).await.unwrap();
    let chrome = b
        .client
        .execute("return window.outerHeight - window.innerHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(0) as u32;
    if chrome > 0 {
        b.client.set_window_size(w, h + chrome).await.unwrap();
    }
    // The page sees a resize a moment after the window gets it: wait for the new width.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let inner = b
            .client
            .execute("return window.innerWidth", vec![])
            .await
            .unwrap();
        if inner.as_u64() == Some(u64::from(w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn screenshots_of_the_main_pages() {
    let Some(paths) = browser_paths() else { return };
    let _one = ONE_BROWSER.lock().await;
    let app = spawn_app().await;
    let b = open_browser(&paths, &app.address, true).await;
    let mut problems = Vec::new();
    b.goto("/login").await;
    shoot(&b, "login", true, &mut problems).await;
    b.goto("/signup").await;
    shoot(&b, "signup", true, &mut problems).await;
    sign_up(&b).await;

    // The stylesheet loads under the Content-Security-Policy.
    let bg = b
        .find("body")
        .await
        .css_value("background-color")
        .await
        .unwrap();
    assert_ne!(bg, "rgba(0, 0, 0, 0)", "app.css applies");
    shoot(&b, "keys-empty", true, &mut problems).await;

    // The New key form with validation errors.
    b.click_text("New key").await;
    b.find("#name").await;
    shoot(&b, "new-key", true, &mut problems).await;
    b.fill("#name", "   ").await;
    b.fill("#daily_limit", "lots").await;
    b.click_text("Create").await;
    b.find(".notice.error").await;
    // Focus moved to the error summary (autofocus: no script needed), whose lines link to
    // the fields; the money message says what was wrong with "lots".
    let focused = b
        .client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, "error-summary", "focus lands on the error summary");
    b.find("#error-summary a[href='#name']").await;
    let summary = b.text("#error-summary").await;
    assert!(
        summary.contains("Enter the limit as a number of credits"),
        "{summary}"
    );
    assert!(b
        .find("#name[aria-invalid=true]")
        .await
        .is_displayed()
        .await
        .unwrap());
    // The Region choice says which models have no provider there, before Create.
    let us_west = b.text("#region option[value='us-west']").await;
    assert!(us_west.starts_with("us-west · not "), "{us_west}");
    shoot(&b, "new-key-errors", false, &mut problems).await;
    b.click_text("Cancel").await;
    b.wait_path("/keys").await;

    let prod = create_key(
        &b,
        &NewKey {
            name: "prod-server",
            models: &["lowrouter/echo", "openai/gpt-4o"],
            region: "eu-west",
            daily_limit: "1.00",
        },
    )
    .await;
    // "Use it": the export line (the token written out once more, on this page only) and
    // curl, Python and Node snippets, all shown, each with its Copy button; the scoping.
    let reveal = b.source().await;
    assert!(reveal.contains(&format!("export LOWROUTER_API_KEY={prod}")));
    for id in ["export", "curl", "python", "node"] {
        let copy = b.find(&format!("button[data-copy='#snippet-{id}']")).await;
        assert!(copy.is_displayed().await.unwrap(), "Copy for {id}");
        b.find(&format!("pre[tabindex='0'] code#snippet-{id}"))
            .await;
    }
    let summary = b.text(".key-summary").await;
    assert!(
        summary.contains("lowrouter/echo, openai/gpt-4o") && summary.contains("eu-west"),
        "{summary}"
    );
    shoot(&b, "reveal", false, &mut problems).await;
    b.click("a[href='/keys']").await;

    // Names are at most 64 characters: one long with hyphens, one without any break.
    let long_name = "customer-support-summariser-eu-knowledge-base-nightly-batch-v2";
    let long = create_key(
        &b,
        &NewKey {
            name: long_name,
            models: &[],
            region: "",
            daily_limit: "",
        },
    )
    .await;
    b.goto("/keys").await;
    // 64 characters without a break, scoped to all four models, with a daily limit that
    // two 40-byte echoes (0.024 credits each) use up exactly.
    let unbroken = "x".repeat(64);
    let full = create_key(
        &b,
        &NewKey {
            name: &unbroken,
            models: &[
                "lowrouter/echo",
                "openai/gpt-4o",
                "openai/gpt-4o-mini",
                "anthropic/claude-sonnet-4-5",
            ],
            region: "us-west",
            daily_limit: "0.048",
        },
    )
    .await;
    b.goto("/keys").await;
    let local = create_key(
        &b,
        &NewKey {
            name: "local-dev",
            models: &[],
            region: "",
            daily_limit: "",
        },
    )
    .await;
    b.goto("/keys").await;
    let _old = create_key(
        &b,
        &NewKey {
            name: "old-laptop",
            models: &[],
            region: "",
            daily_limit: "",
        },
    )
    .await;
    b.goto("/keys").await;

    for (token, text) in [
        (&prod, "Hello"),
        (
            &prod,
            "A somewhat longer message to make the token counts differ.",
        ),
        (&long, "Summarise this ticket"),
        (&local, "hi"),
        (&full, &"x".repeat(40)),
        (&full, &"x".repeat(40)),
    ] {
        let r = app.chat(token, "lowrouter/echo", text).await;
        assert_eq!(r.status(), 200);
    }
    let r = app.chat(&full, "lowrouter/echo", &"x".repeat(40)).await;
    assert_eq!(r.status(), 429, "the daily limit is used up");
    let r = app.chat(&prod, "anthropic/claude-sonnet-4-5", "hi").await;
    assert_eq!(r.status(), 403);
    let r = app.chat(&prod, "nobody/no-such-model", "hi").await;
    assert_eq!(r.status(), 404);

    // Disable one key, and delete another, so every state shows.
    b.click("a[aria-label^='Manage local-dev']").await;
    b.click_text("Disable").await;
    // It served a request a moment ago: Disable asks first.
    b.wait_h1("Disable “local-dev”?").await;
    shoot(&b, "confirm-disable", true, &mut problems).await;
    b.click_text("Disable key").await;
    b.wait_path("/keys").await;
    b.click("a[aria-label^='Manage local-dev']").await;
    // The key's page now offers Enable, in the same place and width as Disable was.
    b.find("button.fixed-width").await;
    assert_eq!(b.text("button.fixed-width").await, "Enable");
    shoot(&b, "key-page", true, &mut problems).await;
    b.click("a.button[href$='/roll']").await;
    b.wait_h1("Roll “local-dev”").await;
    // The Roll form's fields show their values: none is the 16 px box of a checkbox.
    for field in ["quiet_minutes", "deadline_days", "at"] {
        let w = b
            .find(&format!("input[name={field}]"))
            .await
            .rectangle()
            .await
            .unwrap()
            .2;
        assert!(w >= 40.0, "the {field} field is {w}px wide");
    }
    shoot(&b, "roll-form", true, &mut problems).await;
    b.client.back().await.unwrap();
    b.click_text("Edit").await;
    assert_eq!(b.h1().await, "Edit “local-dev”");
    shoot(&b, "edit-key", true, &mut problems).await;
    b.goto("/keys").await;
    b.click("a[aria-label^='Manage old-laptop']").await;
    b.click_text("Delete").await;
    assert!(b.source().await.contains("Disable instead"));
    shoot(&b, "delete-key", true, &mut problems).await;
    b.click_text("Delete key").await;
    b.wait_path("/keys").await;
    let keys = b.source().await;
    assert!(
        keys.contains("Limit reached until 00:00 UTC"),
        "the used-up key says so"
    );
    assert!(
        keys.contains("0.048 of 0.048 today"),
        "spend against its limit"
    );
    shoot(&b, "keys", true, &mut problems).await;

    // Phones: the navigation opens from Menu (a <details>: no script needed) and fits.
    set_viewport(&b, PHONE.0, PHONE.1).await;
    b.click("details.menu > summary").await;
    assert!(b
        .find("details.menu[open] .menu-panel a[href='/usage']")
        .await
        .is_displayed()
        .await
        .unwrap());
    let found = b.client.execute(OVERFLOW_JS, vec![]).await.unwrap();
    for f in found.as_array().into_iter().flatten() {
        problems.push(format!("open menu at 390px: {}", f.as_str().unwrap_or("?")));
    }
    let png = b.client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join("menu-open-390.png"), png).unwrap();
    b.click("details.menu > summary").await;
    set_viewport(&b, DESKTOP.0, DESKTOP.1).await;

    see_usage_of(&b, long_name).await;
    let usage = b.source().await;
    assert!(usage.contains("429 · Daily limit reached") && usage.contains("404 · Unknown model"));
    // Times read at a glance ("just now") with the exact UTC time on hover and in datetime;
    // provider, region and model come from the catalogue, not free text.
    let when = b.find("table.usage time[datetime]").await;
    assert_eq!(when.text().await.unwrap(), "just now");
    let exact = when.attr("title").await.unwrap().unwrap_or_default();
    assert!(exact.ends_with(" UTC"), "{exact}");
    b.find("select#f-provider option[value='lowrouter']").await;
    b.find("select#f-region option[value='eu-west']").await;
    b.find("datalist#model-ids option[value='openai/gpt-4o']")
        .await;
    shoot(&b, "usage", true, &mut problems).await;

    b.click("nav[aria-label=Main] a[href='/']").await;
    b.wait_path("/").await;
    shoot(&b, "home", true, &mut problems).await;

    b.goto("/usage").await;
    b.click("table.usage td a").await;
    b.find("dl.details").await;
    shoot(&b, "usage-detail", false, &mut problems).await;

    // A refused request's page: what it means, the key now, a way to Edit.
    b.goto("/usage?status=daily_limit_reached").await;
    b.click("table.usage td a").await;
    b.find("dl.details").await;
    assert!(b.source().await.contains("What this means"));
    shoot(&b, "usage-detail-refused", true, &mut problems).await;

    // Management keys: create one (the reveal), then the list, from the navigation.
    b.click("nav[aria-label=Main] a[href='/management-keys']")
        .await;
    b.wait_path("/management-keys").await;
    b.fill("#name", "terraform").await;
    b.click("form[action='/management-keys'] button[type=submit]")
        .await;
    b.find("#token").await;
    assert!(b.source().await.contains("lr-mk-"));
    shoot(&b, "management-key-reveal", false, &mut problems).await;
    b.goto("/management-keys").await;
    assert!(b.source().await.contains("terraform"));
    shoot(&b, "management-keys", true, &mut problems).await;

    // Alerts: the notifications list and the settings (endpoints, events, per-key brakes),
    // from the navigation.
    b.click("nav[aria-label=Main] a[href='/alerts']").await;
    b.wait_path("/alerts").await;
    shoot(&b, "alerts", true, &mut problems).await;
    b.goto("/alerts/settings").await;
    shoot(&b, "alert-settings", true, &mut problems).await;

    // Workspaces: New workspace, and the owner's settings of their personal one (rename;
    // it says why it cannot be deleted).
    b.goto("/workspaces/new").await;
    assert_eq!(b.h1().await, "New workspace");
    shoot(&b, "workspace-new", true, &mut problems).await;
    b.goto("/workspace/settings").await;
    assert!(b.h1().await.starts_with("Settings of"));
    shoot(&b, "workspace-settings", true, &mut problems).await;

    // A signed-in 404 keeps the layout: the navigation and the balance.
    b.goto("/keys/999999999").await;
    assert_eq!(b.h1().await, "Not found");
    b.find("nav[aria-label=Main] a[href='/usage']").await;
    b.find(".balance").await;
    shoot(&b, "not-found", true, &mut problems).await;
    b.close().await;
    assert!(problems.is_empty(), "layout problems: {problems:#?}");
}

/// Stores a verification link for the account `email` (the browser tests run no SMTP
/// server: tests/api/email_verify.rs follows real mail); returns its path.
async fn plant_verification_link(app: &TestApp, email: &str) -> String {
    use sqlx::{Connection, Executor};
    let token = lowrouter::domain::VerifyToken::generate();
    let now = lowrouter::domain::time_util::now_ms();
    let sql = format!(
        "insert into email_verification_tokens (token_hash, account_id, created_at, expires_at) \
         select '{}', id, {now}, {} from accounts where email = '{email}'",
        token.hash().0,
        now + 3_600_000
    );
    if app.db_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
        c.execute(sql.as_str()).await.unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
        c.execute(sql.as_str()).await.unwrap();
    }
    format!("/verify-email?token={}", token.expose())
}

/// Email verification's pages at every width: the banner, the
/// refused New key page, Resend refused within the minute, the link's page; then the
/// button verifies and the banner goes.
#[tokio::test]
async fn email_verification_pages_fit_and_work() {
    let Some(paths) = browser_paths() else { return };
    let _one = ONE_BROWSER.lock().await;
    // Mail goes nowhere (nothing listens there): the pages do not wait for it.
    let dead = format!("smtp://127.0.0.1:{}", free_port());
    let app = spawn_app_with(|s| {
        s.require_email_verification = true;
        s.smtp_url = Some(lowrouter::config::Secret::new(dead));
        s.mail_from = Some("noreply@example.test".into());
        s.public_base_url = Some("https://keys.example.test".into());
    })
    .await;
    let b = open_browser(&paths, &app.address, true).await;
    let mut problems = Vec::new();
    // Longer addresses are cut with an ellipsis in the top bar (`.email`), which the
    // overflow check counts as cut off; the banner wraps them at any width.
    let email = "person.verify@example.com";
    b.goto("/signup").await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click_text("Create account").await;
    b.wait_path("/keys").await;
    assert!(b
        .text(".verify-banner")
        .await
        .contains("Verify your email address."));
    shoot(&b, "keys-unverified", true, &mut problems).await;

    b.click_text("New key").await;
    b.wait_path("/keys/new").await;
    assert!(b
        .text(".notice.error")
        .await
        .contains("Verify your email address before creating API keys"));
    shoot(&b, "new-key-unverified", false, &mut problems).await;

    b.click_text("Resend email").await;
    b.wait_path("/verify-email/resend").await;
    assert_eq!(b.h1().await, "Please wait");
    shoot(&b, "resend-too-soon", true, &mut problems).await;

    let link = plant_verification_link(&app, email).await;
    b.goto(&link).await;
    assert_eq!(b.h1().await, "Verify your email address");
    shoot(&b, "verify-email", true, &mut problems).await;
    b.click_text("Verify my email").await;
    b.wait_path("/keys").await;
    assert!(b.source().await.contains("Your email address is verified"));
    assert!(!b.source().await.contains("verify-banner"));
    b.close().await;
    assert!(problems.is_empty(), "layout problems: {problems:#?}");
}

// Teams (issue 18): invitations, roles, removal, offboarding, audit log.
#[path = "browser/teams.rs"]
mod teams;
