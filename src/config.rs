//! Typed settings: defaults, then an optional `lowrouter.toml`, then `LOWROUTER_*`
//! environment variables. Relative paths in the file resolve against the file's directory,
//! never against the working directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub use crate::client::ProxyHeader;
use crate::domain::team::InvitationBudget;
use crate::domain::Credits;

/// A secret configuration value: `Debug` prints nothing of it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port`; port 0 picks a free port (tests).
    pub bind: String,
    /// `sqlite://path` (created if missing) or `postgres://…`.
    pub database_url: String,
    /// Signs session cookies. When absent, one is generated once and stored in the database.
    pub session_secret: Option<Secret>,
    /// Mark cookies `Secure` (serve over HTTPS). Unset: on exactly when `public_base_url`
    /// is `https://…` (see [`Settings::cookie_secure`]).
    pub cookie_secure: Option<bool>,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// Credits granted to every new account.
    pub signup_grant: Credits,
    /// Audit events older than this many days are deleted by the hourly retention job.
    pub audit_retention_days: u32,
    /// Raw usage rows (one per request) older than this many days are removed by the hourly
    /// retention job; 0 keeps them forever. The daily rollups, which every total, chart and
    /// limit reads, are kept forever.
    pub usage_retention_days: u32,
    /// Replaces the built-in model catalogue.
    pub catalogue_path: Option<PathBuf>,
    /// Upstream deadlines (see `gateway::upstream`): to connect, to the response's headers
    /// (first byte), between two reads of its body (idle), and in all: the longest a request
    /// and so its hold can live.
    pub upstream_connect_timeout: Duration,
    pub upstream_first_byte_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Largest upstream answer read whole (a non-streamed completion, a model list): a
    /// provider must not be able to exhaust our memory. Over it the request fails with 502
    /// and frees its hold. Streams are read chunk by chunk and are not capped here.
    pub upstream_max_body_bytes: usize,
    /// Largest accepted request body (dashboard forms and gateway JSON).
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (see `transport`).
    pub body_read_timeout: Duration,
    /// Browser origins (`https://app.example.com`) allowed to call the gateway (`/api/v1`)
    /// across origins: none by default. The dashboard never answers CORS.
    pub cors_allowed_origins: Vec<String>,
    /// Failed logins allowed per (email, client address) within `login_window`; each email
    /// and each client address alone gets [`crate::web::throttle::LOOSE_FACTOR`] times as
    /// many (see `web::throttle`).
    pub login_max_failures: u32,
    pub login_window: Duration,
    /// Addresses (or CIDR ranges) of reverse proxies whose forwarding header is believed.
    /// Empty: the TCP peer is the client, and forwarding headers are ignored (anyone could
    /// send them).
    pub trusted_proxies: Vec<IpNet>,
    /// The one forwarding header those proxies write (see `client`); any other is ignored,
    /// since a proxy passes the ones it does not write through from the client.
    pub trusted_proxy_header: ProxyHeader,
    /// Sign-ups accepted per client address per hour.
    pub signup_max_per_hour: u32,
    /// A session ends this long after its login however active it is (on top of the idle
    /// expiry). Whole days in the file and the environment; any duration here (tests).
    pub session_max_age: Duration,
    /// Password hashes (argon2, 19 MiB each) run at once; default: the number of cores.
    pub password_hash_workers: usize,
    /// Hashes that may wait for a worker; beyond them the request gets 503 + Retry-After.
    pub password_hash_queue: usize,
    /// `host:port` of the Prometheus metrics listener (`GET /metrics`); `None`: no metrics.
    pub metrics_bind: Option<String>,
    /// On SIGTERM/Ctrl-C: how long in-flight requests and streams may take to finish.
    pub shutdown_timeout: Duration,
    /// New accounts must open a link sent to their email address before they can create
    /// keys, and get `signup_grant` then. Needs `smtp_url`, `mail_from` and
    /// `public_base_url` (checked at start: [`Settings::check`]).
    pub require_email_verification: bool,
    /// Where mail goes out, as lettre reads it: `smtp://host:port` (plain, for a relay on
    /// localhost), `smtp://host?tls=required` (STARTTLS), `smtps://host` (TLS from the
    /// start); `smtp://user:password@host` to authenticate. A secret: it may hold a password.
    pub smtp_url: Option<Secret>,
    /// The sender of verification mail: `LowRouter <noreply@example.com>` or an address.
    pub mail_from: Option<String>,
    /// The dashboard's address as people reach it (`https://keys.example.com`), for links in
    /// mail. Never taken from a request's `Host`, which a stranger chooses.
    pub public_base_url: Option<String>,
    /// Verification mail per account: at most one per `verification_resend_interval` and
    /// `verification_mails_per_day` per 24 hours, the sign-up's own included.
    pub verification_resend_interval: Duration,
    pub verification_mails_per_day: u32,
    /// Invitations per 24 hours: per person inviting, per workspace, per invited address
    /// (each at least 1).
    pub invitation_budget: InvitationBudget,
    /// The Keys page marks a key "rotate" when its current secret is this old.
    pub rotate_after_days: u32,
    /// ... and "unused" after this long without a request.
    pub unused_after_days: u32,
    /// Public keys that sign leaked-token reports (GitHub's format: identifier + PEM).
    /// Empty: reports are accepted unsigned.
    pub leak_report_public_keys: Vec<LeakReportKey>,
    /// Webhook targets may be loopback or private addresses (self-hosted receivers, tests);
    /// off, they must be public (`alerts::target`).
    pub webhook_allow_private_targets: bool,
    /// The pause before a failed webhook delivery's first retry; each next one doubles.
    pub webhook_retry_base: Duration,
    /// How often alert workers look for due deliveries and digests.
    pub alert_poll: Duration,
}

/// One public key of a secret-scanning programme, as GitHub publishes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakReportKey {
    pub key_identifier: String,
    pub key: String,
}

impl Default for Settings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Settings {
            bind: "127.0.0.1:8080".into(),
            database_url: "sqlite://lowrouter.db".into(),
            session_secret: None,
            cookie_secure: None,
            session_idle: Duration::from_secs(12 * 3600),
            signup_grant: Credits::from_micros(5_000_000),
            audit_retention_days: 400,
            usage_retention_days: 400,
            catalogue_path: None,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_first_byte_timeout: Duration::from_secs(120),
            upstream_idle_timeout: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(30 * 60),
            upstream_max_body_bytes: 32 * 1024 * 1024,
            // What providers take for a chat request with images (OpenAI: 20 MB per image).
            max_body_bytes: 20 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(30),
            cors_allowed_origins: Vec::new(),
            login_max_failures: 5,
            login_window: Duration::from_secs(15 * 60),
            trusted_proxies: Vec::new(),
            trusted_proxy_header: ProxyHeader::XForwardedFor,
            signup_max_per_hour: 5,
            session_max_age: Duration::from_secs(7 * 86_400),
            password_hash_workers: cores,
            password_hash_queue: 4 * cores,
            metrics_bind: None,
            shutdown_timeout: Duration::from_secs(30),
            require_email_verification: false,
            smtp_url: None,
            mail_from: None,
            public_base_url: None,
            verification_resend_interval: Duration::from_secs(60),
            verification_mails_per_day: 10,
            invitation_budget: InvitationBudget::default(),
            rotate_after_days: 90,
            unused_after_days: 30,
            leak_report_public_keys: Vec::new(),
            webhook_allow_private_targets: false,
            webhook_retry_base: Duration::from_secs(30),
            alert_poll: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    bind: Option<String>,
    database_url: Option<String>,
    session_secret: Option<Secret>,
    cookie_secure: Option<bool>,
    session_idle_minutes: Option<u64>,
    signup_grant: Option<Credits>,
    audit_retention_days: Option<u32>,
    usage_retention_days: Option<u32>,
    catalogue_path: Option<PathBuf>,
    upstream_connect_timeout_ms: Option<u64>,
    upstream_first_byte_timeout_secs: Option<u64>,
    upstream_idle_timeout_secs: Option<u64>,
    upstream_timeout_secs: Option<u64>,
    upstream_max_body_bytes: Option<usize>,
    max_body_bytes: Option<usize>,
    body_read_timeout_secs: Option<u64>,
    cors_allowed_origins: Option<Vec<String>>,
    login_max_failures: Option<u32>,
    login_window_minutes: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
    trusted_proxy_header: Option<String>,
    signup_max_per_hour: Option<u32>,
    session_max_age_days: Option<u64>,
    password_hash_workers: Option<usize>,
    password_hash_queue: Option<usize>,
    metrics_bind: Option<String>,
    shutdown_timeout_secs: Option<u64>,
    require_email_verification: Option<bool>,
    smtp_url: Option<Secret>,
    mail_from: Option<String>,
    public_base_url: Option<String>,
    invitations_per_inviter_per_day: Option<u32>,
    invitations_per_workspace_per_day: Option<u32>,
    invitations_per_address_per_day: Option<u32>,
    rotate_after_days: Option<u32>,
    unused_after_days: Option<u32>,
    leak_report_public_keys: Option<Vec<LeakReportKey>>,
    webhook_allow_private_targets: Option<bool>,
    webhook_retry_base_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Toml {
        path: String,
        source: toml::de::Error,
    },
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Loads `path` if given, else `./lowrouter.toml` if it exists, then applies the
    /// environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut s = Settings::default();
        let default_path = Path::new("lowrouter.toml");
        let path = path.or_else(|| default_path.exists().then_some(default_path));
        if let Some(path) = path {
            s.apply_file(path)?;
        }
        s.apply_env(|k| std::env::var(k).ok())?;
        Ok(s)
    }

    /// Long on purpose: one line per setting, in the order of the README's table.
    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: shown.clone(),
            source,
        })?;
        let shown_again = shown.clone();
        let f: FileSettings = toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: shown,
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(v) = f.bind {
            self.bind = v;
        }
        if let Some(v) = f.database_url {
            self.database_url = resolve_sqlite_url(&v, base);
        }
        if let Some(v) = f.session_secret {
            self.session_secret = Some(v);
        }
        if let Some(v) = f.cookie_secure {
            self.cookie_secure = Some(v);
        }
        if let Some(v) = f.session_idle_minutes {
            self.session_idle = Duration::from_secs(v * 60);
        }
        if let Some(v) = f.signup_grant {
            self.signup_grant = v;
        }
        if let Some(v) = f.audit_retention_days {
            self.audit_retention_days = v.max(1);
        }
        if let Some(v) = f.usage_retention_days {
            self.usage_retention_days = v;
        }
        if let Some(v) = f.catalogue_path {
            self.catalogue_path = Some(base.join(v));
        }
        if let Some(v) = f.upstream_connect_timeout_ms {
            self.upstream_connect_timeout = Duration::from_millis(v);
        }
        if let Some(v) = f.upstream_first_byte_timeout_secs {
            self.upstream_first_byte_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.upstream_idle_timeout_secs {
            self.upstream_idle_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.upstream_timeout_secs {
            self.upstream_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.upstream_max_body_bytes {
            self.upstream_max_body_bytes = v.max(1024);
        }
        if let Some(v) = f.max_body_bytes {
            self.max_body_bytes = v;
        }
        if let Some(v) = f.body_read_timeout_secs {
            self.body_read_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.cors_allowed_origins {
            self.cors_allowed_origins = parse_origins("cors_allowed_origins", v)?;
        }
        if let Some(v) = f.login_max_failures {
            self.login_max_failures = v;
        }
        if let Some(v) = f.login_window_minutes {
            self.login_window = Duration::from_secs(v * 60);
        }
        if let Some(v) = f.trusted_proxies {
            self.trusted_proxies = v
                .iter()
                .map(|p| parse_proxy(p))
                .collect::<Result<_, _>>()
                .map_err(|m| {
                    ConfigError::Invalid(format!("{shown_again}: trusted_proxies: {m}"))
                })?;
        }
        if let Some(v) = f.trusted_proxy_header {
            self.trusted_proxy_header = ProxyHeader::parse(&v).map_err(|m| {
                ConfigError::Invalid(format!("{shown_again}: trusted_proxy_header: {m}"))
            })?;
        }
        if let Some(v) = f.signup_max_per_hour {
            self.signup_max_per_hour = v;
        }
        if let Some(v) = f.session_max_age_days {
            self.session_max_age = Duration::from_secs(v * 86_400);
        }
        if let Some(v) = f.password_hash_workers {
            self.password_hash_workers = v.max(1);
        }
        if let Some(v) = f.password_hash_queue {
            self.password_hash_queue = v;
        }
        if let Some(v) = f.metrics_bind {
            self.metrics_bind = Some(v);
        }
        if let Some(v) = f.shutdown_timeout_secs {
            self.shutdown_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.require_email_verification {
            self.require_email_verification = v;
        }
        if let Some(v) = f.smtp_url {
            self.smtp_url = Some(v);
        }
        if let Some(v) = f.mail_from {
            self.mail_from = Some(v);
        }
        if let Some(v) = f.public_base_url {
            self.public_base_url = Some(parse_base_url(&v).map_err(|m| {
                ConfigError::Invalid(format!("{shown_again}: public_base_url: {m}"))
            })?);
        }
        if let Some(v) = f.invitations_per_inviter_per_day {
            self.invitation_budget.per_inviter = v.max(1);
        }
        if let Some(v) = f.invitations_per_workspace_per_day {
            self.invitation_budget.per_workspace = v.max(1);
        }
        if let Some(v) = f.invitations_per_address_per_day {
            self.invitation_budget.per_address = v.max(1);
        }
        if let Some(v) = f.rotate_after_days {
            self.rotate_after_days = v;
        }
        if let Some(v) = f.unused_after_days {
            self.unused_after_days = v;
        }
        if let Some(v) = f.leak_report_public_keys {
            self.leak_report_public_keys = v;
        }
        if let Some(v) = f.webhook_allow_private_targets {
            self.webhook_allow_private_targets = v;
        }
        if let Some(v) = f.webhook_retry_base_secs {
            self.webhook_retry_base = Duration::from_secs(v.max(1));
        }
        Ok(())
    }

    /// What no single setting can check alone: email verification needs a way to send mail
    /// and an address to link to. Called at start, so a gap fails there with its name.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.require_email_verification {
            return Ok(());
        }
        let missing: Vec<&str> = [
            ("smtp_url", self.smtp_url.is_none()),
            ("mail_from", self.mail_from.is_none()),
            ("public_base_url", self.public_base_url.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Invalid(format!(
            "require_email_verification is on, but {} not set: verification links are sent \
             by mail (smtp_url, mail_from) and point at this dashboard's public address \
             (public_base_url, e.g. https://keys.example.com); set them (file keys, or \
             LOWROUTER_SMTP_URL, LOWROUTER_MAIL_FROM, LOWROUTER_PUBLIC_BASE_URL), or turn \
             verification off",
            missing.join(", ") + if missing.len() == 1 { " is" } else { " are" }
        )))
    }

    /// Whether cookies are `Secure`: as set, else whether the public address is HTTPS.
    pub fn cookie_secure(&self) -> bool {
        self.cookie_secure.unwrap_or_else(|| self.public_is_https())
    }

    fn public_is_https(&self) -> bool {
        self.public_base_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    /// Settings that work but are probably a mistake, for warnings at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        match (self.cookie_secure, self.public_base_url.as_deref()) {
            (Some(false), Some(url)) if self.public_is_https() => out.push(format!(
                "cookie_secure is false but public_base_url is {url}: session cookies would \
                 also travel over plain HTTP; remove cookie_secure (it follows the URL) or set \
                 it to true"
            )),
            (Some(true), Some(url)) if !self.public_is_https() => out.push(format!(
                "cookie_secure is true but public_base_url is {url}: browsers do not send \
                 Secure cookies over plain HTTP, so nobody could stay logged in"
            )),
            _ => {}
        }
        out
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
    }
}

mod env;
mod parse;
pub use parse::parse_proxy;
use parse::{parse_base_url, parse_origins, resolve_sqlite_url};
#[cfg(test)]
mod tests;
