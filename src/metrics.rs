//! Prometheus metrics, served as text on a listener of their own (`metrics_bind`, off by
//! default) so the main listener never exposes them.
//!
//! Recorded through the `metrics` facade into `metrics-exporter-prometheus`'s recorder;
//! rendering is the exporter's, serving is actix's (no second HTTP stack). Until
//! [`install`] runs, every function here returns at once: nothing is built per request.
//!
//! Labels are bounded and carry nothing personal: route *patterns* (never a raw path),
//! catalogue model and provider ids (never the client's model string), status codes,
//! fixed words. Never a token, key name, email or address.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static ENABLED: AtomicBool = AtomicBool::new(false);
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Seconds: from a millisecond to a long stream.
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];
/// Rows per usage transaction (the SQLite applier writes up to 4096, PostgreSQL 1024).
const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 4096.0,
];

/// Installs the process-wide recorder (once; later calls return the same handle) and
/// starts recording.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    // Two applications in one process (tests) may start at once: one installs.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_rows".into()), &BATCH_BUCKETS)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    let handle = HANDLE.get_or_init(|| handle).clone();
    ENABLED.store(true, Ordering::Release);
    // Histograms keep their samples until upkeep folds them in: without scrapes they would
    // grow without bound.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        })?;
    Ok(handle)
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "lowrouter_http_requests_total",
        "HTTP requests answered, by method, route pattern and status"
    );
    describe_histogram!(
        "lowrouter_http_request_duration_seconds",
        Unit::Seconds,
        "Time to the response's headers (a stream's body continues after), by route"
    );
    describe_counter!(
        "lowrouter_gateway_requests_total",
        "Gateway completions recorded, by catalogue model, provider, outcome and status"
    );
    describe_histogram!(
        "lowrouter_gateway_request_duration_seconds",
        Unit::Seconds,
        "Whole gateway completions (streams to their end), by catalogue model and provider"
    );
    describe_counter!(
        "lowrouter_upstream_errors_total",
        "Provider attempts that failed before any byte reached the client, by provider"
    );
    describe_counter!(
        "lowrouter_upstream_fallbacks_total",
        "Requests sent to a further provider after one failed, by catalogue model"
    );
    describe_histogram!(
        "lowrouter_usage_batch_rows",
        "Usage rows per transaction, by backend"
    );
    describe_histogram!(
        "lowrouter_key_read_batch_lookups",
        "PostgreSQL: requests whose key one shared read answered"
    );
    describe_counter!(
        "lowrouter_usage_batch_failures_total",
        "Usage transactions that failed: retried, or rows the database refused"
    );
    describe_gauge!(
        "lowrouter_usage_journal_lag",
        "SQLite: journaled usage entries not yet applied to the database"
    );
    describe_counter!(
        "lowrouter_login_failures_total",
        "Failed sign-ins (wrong email or password)"
    );
    describe_counter!(
        "lowrouter_login_throttled_total",
        "Sign-ins refused because the email or address used its budget of failures"
    );
}

/// One HTTP request, by its route pattern (`unmatched` when none).
pub fn http_request(method: &'static str, route: &str, status: StatusCode, elapsed: Duration) {
    if !enabled() {
        return;
    }
    let status = status_label(status);
    let route = route.to_owned();
    metrics::counter!("lowrouter_http_requests_total",
        "method" => method, "route" => route.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("lowrouter_http_request_duration_seconds",
        "method" => method, "route" => route)
    .record(elapsed.as_secs_f64());
}

/// One recorded gateway completion, as its usage row says it. The module imports nothing of
/// ours: the caller fills this in (metrics is a leaf every layer may call).
pub struct Completion<'a> {
    /// The resolved catalogue model and provider (`none` when the request failed before
    /// either was chosen).
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    /// `ok`, `client_error` or `upstream_error`.
    pub outcome: &'static str,
    pub http_status: u16,
    pub streamed: bool,
    pub latency_ms: i64,
}

/// One recorded gateway completion (the usage row).
pub fn gateway_request(c: Completion<'_>) {
    if !enabled() {
        return;
    }
    let model = c.model.unwrap_or("none").to_owned();
    let provider = c.provider.unwrap_or("none").to_owned();
    let status = StatusCode::from_u16(c.http_status).map_or("other", status_label);
    metrics::counter!("lowrouter_gateway_requests_total",
        "model" => model.clone(), "provider" => provider.clone(),
        "outcome" => c.outcome, "status" => status,
        "streamed" => if c.streamed { "true" } else { "false" })
    .increment(1);
    metrics::histogram!("lowrouter_gateway_request_duration_seconds",
        "model" => model, "provider" => provider)
    .record(c.latency_ms.max(0) as f64 / 1000.0);
}

/// A provider attempt failed before anything reached the client.
pub fn upstream_error(provider: &str) {
    if enabled() {
        metrics::counter!("lowrouter_upstream_errors_total", "provider" => provider.to_owned())
            .increment(1);
    }
}

/// A request moves on to a further provider of `model` (a catalogue id).
pub fn upstream_fallback(model: &str) {
    if enabled() {
        metrics::counter!("lowrouter_upstream_fallbacks_total", "model" => model.to_owned())
            .increment(1);
    }
}

/// A usage transaction of `rows` rows was written.
pub fn usage_batch(backend: &'static str, rows: usize) {
    if enabled() {
        metrics::histogram!("lowrouter_usage_batch_rows", "backend" => backend).record(rows as f64);
    }
}

/// PostgreSQL: requests whose key one shared read answered (`store::keys::group_read`).
pub fn key_read_batch(lookups: usize) {
    if enabled() {
        metrics::histogram!("lowrouter_key_read_batch_lookups").record(lookups as f64);
    }
}

/// A usage transaction failed: `retry` (it is tried again), `refused` (the database refused
/// a row's data), `abandoned` (retries exhausted).
pub fn usage_batch_failure(kind: &'static str) {
    if enabled() {
        metrics::counter!("lowrouter_usage_batch_failures_total", "kind" => kind).increment(1);
    }
}

/// SQLite: journaled entries not yet applied.
pub fn usage_journal_lag(entries: i64) {
    if enabled() {
        metrics::gauge!("lowrouter_usage_journal_lag").set(entries.max(0) as f64);
    }
}

/// A webhook delivery attempt: `delivered` or `failed` (retried or given up).
pub fn webhook_delivery(outcome: &'static str) {
    if enabled() {
        metrics::counter!("lowrouter_webhook_attempts_total", "outcome" => outcome).increment(1);
    }
}

pub fn login_failure() {
    if enabled() {
        metrics::counter!("lowrouter_login_failures_total").increment(1);
    }
}

pub fn login_throttled() {
    if enabled() {
        metrics::counter!("lowrouter_login_throttled_total").increment(1);
    }
}

/// Status codes as labels: the ones this server answers are few; anything else is `other`.
fn status_label(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        402 => "402",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        409 => "409",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

/// The metrics listener: `GET /metrics` (Prometheus text format), one worker, no signal
/// handling of its own (the application stops it after the main server).
pub fn serve(bind: &str, handle: PrometheusHandle) -> anyhow::Result<(Server, u16)> {
    let listener = TcpListener::bind(bind).with_context(|| format!("binding metrics {bind}"))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(handle.clone()))
            .route("/metrics", web::get().to(render))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, port))
}

async fn render(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}
