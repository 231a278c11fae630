//! The state every handler shares. Built once by `startup`, which only wires.

use std::sync::Arc;

use actix_web::cookie::Key;

use crate::catalogue::Catalogue;
use crate::client::TrustedProxies;
use crate::config::Settings;
use crate::domain::event_id::EventIds;
use crate::gateway::leaks::LeakKeys;
use crate::gateway::ledger::Ledger;
use crate::gateway::rate_limit::RateLimits;
use crate::gateway::refusals::RefusalBudgets;
use crate::gateway::upstream::Upstreams;
use crate::gateway::usage_writer::UsageWriter;
use crate::mail::Mailer;
use crate::password_hashing::HashPool;
use crate::store::Store;
use crate::web::form::FormKey;
use crate::web::throttle::{LoginThrottle, SignupThrottle};

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub catalogue: Arc<Catalogue>,
    pub settings: Arc<Settings>,
    pub throttle: Arc<LoginThrottle>,
    pub signups: Arc<SignupThrottle>,
    /// Runs every argon2 hash and verification, bounded (see its doc).
    pub hasher: Arc<HashPool>,
    /// Whose forwarding headers are believed (`trusted_proxies`).
    pub proxies: Arc<TrustedProxies>,
    /// Public keys that sign leaked-token reports (none: reports are accepted unsigned).
    pub leak_keys: Arc<LeakKeys>,
    pub usage: UsageWriter,
    pub upstreams: Arc<Upstreams>,
    /// Where holds live: in memory (SQLite) or shared by every process (PostgreSQL).
    pub ledger: Ledger,
    /// Budgets of refused requests per key and failed authentications per address.
    pub refusals: Arc<RefusalBudgets>,
    /// Keys' own requests-per-minute and concurrency limits.
    pub rate_limits: Arc<RateLimits>,
    /// Verified when a login names an unknown email, so timing reveals nothing.
    pub dummy_hash: Arc<String>,
    /// Encrypts the session cookie (read back by "Log out other sessions" to know which
    /// session to keep).
    pub session_key: Key,
    /// Signs the public forms' CSRF nonce (sign-up, log-in, email verification: `web::form`).
    pub form_key: Arc<FormKey>,
    /// Sends verification mail; `None` without `smtp_url` and `mail_from`.
    pub mailer: Option<Arc<Mailer>>,
    /// Where the gateway tells alerts of refused dead secrets.
    pub alerts: Arc<crate::alerts::Feed>,
    /// Encrypts audit event numbers into their public ids (`evt_…`) and back.
    pub event_ids: Arc<EventIds>,
    /// Wakes the webhook worker (a test event was queued).
    pub outbox: Arc<tokio::sync::Notify>,
}
