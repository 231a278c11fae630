//! Alerts (issue 19): what happened to a workspace's keys, told to the dashboard's
//! notifications list, to webhooks and by mail, without the request path waiting on any of it.
//!
//! - [`Feed`]: the usage appliers (SQLite's journal applier, PostgreSQL's group commit) hand
//!   each batch they applied to it: a map of touched keys, under a mutex, no I/O.
//! - [`evaluate`]: a task that wakes on the feed and checks each touched key (limit
//!   thresholds, spend spikes with auto-disable, first use of a model or a network) and
//!   each touched workspace (low balance); [`sweep`] checks expiry and rotation every few
//!   minutes. Every event has a dedupe key, so it is recorded once whatever process finds it.
//! - Events and their outbox rows commit together (`store::alerts`); [`outbox`] delivers
//!   them to webhooks (signed: [`sign`]; SSRF-safe: [`target`]), retrying with exponential
//!   backoff for 24 hours; [`digest`] mails at most one digest per workspace per hour.

pub mod digest;
pub mod evaluate;
pub mod event;
pub mod outbox;
pub mod sign;
pub mod sweep;
pub mod target;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::domain::{Credits, ErrorCode, KeyId, WorkspaceId};
use crate::store::usage::UsageEntry;

/// Touched keys beyond this wait for the next round (the evaluator is behind).
const FEED_MAX_KEYS: usize = 100_000;

/// What the last batches did to one key.
#[derive(Debug, Clone)]
pub struct KeyTouch {
    pub account_id: WorkspaceId,
    /// Catalogue models served (never a client's string).
    pub models: BTreeSet<String>,
    /// Client networks (`domain::client_hint`'s first part).
    pub networks: BTreeSet<String>,
    /// A request was refused at the daily / monthly limit.
    pub day_limit_refused: bool,
    pub month_limit_refused: bool,
    /// Charges by UTC hour (unix ms / 3,600,000) of the rows applied, for
    /// `usage_hourly_keys` (the spike check's history).
    pub hourly: HashMap<i64, i64>,
}

impl KeyTouch {
    fn new(account_id: WorkspaceId) -> KeyTouch {
        KeyTouch {
            account_id,
            models: BTreeSet::new(),
            networks: BTreeSet::new(),
            day_limit_refused: false,
            month_limit_refused: false,
            hourly: HashMap::new(),
        }
    }
}

/// Uses of a dead secret since the last round: secret id -> what the evaluator needs.
#[derive(Debug, Clone)]
pub struct DeadUse {
    pub account_id: WorkspaceId,
    pub key_id: KeyId,
    pub reason: &'static str,
    pub count: i64,
}

/// Batches applied and refused uses of dead secrets, not yet evaluated.
#[derive(Default)]
pub struct Feed {
    touched: Mutex<HashMap<KeyId, KeyTouch>>,
    dead: Mutex<HashMap<i64, DeadUse>>,
    wake: Notify,
}

impl Feed {
    /// Called by a usage applier after a batch is in the database: notes its keys and wakes
    /// the evaluator. A map insert per row; never blocks on I/O.
    pub fn applied(&self, entries: &[UsageEntry]) {
        if entries.is_empty() {
            return;
        }
        {
            let mut t = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            for e in entries {
                let u = &e.usage;
                if t.len() >= FEED_MAX_KEYS && !t.contains_key(&u.key_id) {
                    continue;
                }
                let k = t
                    .entry(u.key_id)
                    .or_insert_with(|| KeyTouch::new(u.account_id));
                if u.cost > Credits::ZERO {
                    *k.hourly.entry(u.started_at / 3_600_000).or_default() += u.cost.micros();
                }
                if let (Some(m), crate::store::usage::UsageStatus::Ok) =
                    (&u.resolved_model, u.status)
                {
                    if k.models.len() < 64 && !k.models.contains(m) {
                        k.models.insert(m.clone());
                    }
                }
                if let Some(net) = u.client.as_deref().and_then(network_of) {
                    if k.networks.len() < 64 && !k.networks.contains(net) {
                        k.networks.insert(net.to_owned());
                    }
                }
                match u.error_code {
                    Some(ErrorCode::DailyLimitReached) => k.day_limit_refused = true,
                    Some(ErrorCode::MonthlyLimitReached) => k.month_limit_refused = true,
                    _ => {}
                }
            }
        }
        self.wake.notify_one();
    }

    /// The gateway refused a revoked, disabled, expired, retired or quarantined secret
    /// (`reason`): counted in memory, told at most once per secret per hour.
    pub fn dead_use(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        secret_id: i64,
        reason: &'static str,
    ) {
        {
            let mut d = self.dead.lock().unwrap_or_else(|e| e.into_inner());
            if d.len() >= FEED_MAX_KEYS && !d.contains_key(&secret_id) {
                return;
            }
            d.entry(secret_id)
                .or_insert(DeadUse {
                    account_id,
                    key_id,
                    reason,
                    count: 0,
                })
                .count += 1;
        }
        self.wake.notify_one();
    }

    fn take(&self) -> (HashMap<KeyId, KeyTouch>, HashMap<i64, DeadUse>) {
        let touched = std::mem::take(&mut *self.touched.lock().unwrap_or_else(|e| e.into_inner()));
        let dead = std::mem::take(&mut *self.dead.lock().unwrap_or_else(|e| e.into_inner()));
        (touched, dead)
    }
}

/// The network part of a client hint (`203.0.113.0/24 · curl` -> `203.0.113.0/24`).
fn network_of(hint: &str) -> Option<&str> {
    let first = hint.split(" · ").next()?;
    first.contains('/').then_some(first)
}

/// Settings the alert tasks read.
#[derive(Clone)]
pub struct AlertConfig {
    pub allow_private_targets: bool,
    /// The first retry's pause; each next one doubles (capped at an hour), for 24 hours.
    pub retry_base: Duration,
    /// How often the outbox is polled for retries and other processes' events.
    pub poll: Duration,
    pub rotate_after_days: u32,
}

/// Starts the evaluator, the sweep, the outbox worker and the digest; they stop when
/// `stop` turns true.
pub fn spawn(
    store: crate::store::Store,
    feed: Arc<Feed>,
    cfg: AlertConfig,
    mailer: Option<Arc<crate::mail::Mailer>>,
    stop: watch::Receiver<bool>,
) -> Arc<Notify> {
    let outbox_wake = Arc::new(Notify::new());
    tokio::spawn(evaluate::run(
        store.clone(),
        feed,
        outbox_wake.clone(),
        stop.clone(),
    ));
    tokio::spawn(sweep::run(
        store.clone(),
        cfg.clone(),
        mailer,
        outbox_wake.clone(),
        stop.clone(),
    ));
    tokio::spawn(outbox::run(store, cfg, outbox_wake.clone(), stop));
    outbox_wake
}

/// A leaked-token report quarantined a live secret: alert its workspace (in the background;
/// the reporter's answer does not wait).
pub fn leak_reported(
    store: crate::store::Store,
    token_hash: String,
    url: Option<String>,
    outbox: Arc<Notify>,
) {
    tokio::spawn(async move {
        let found = async {
            let Some((account_id, key_id)) = store.key_of_secret(&token_hash).await? else {
                return Ok(());
            };
            let key = store.key(account_id, key_id).await?;
            let dedupe = format!("leak:{key_id}:{}", &token_hash[..16.min(token_hash.len())]);
            let details = serde_json::json!({"url": url});
            event::emit(
                &store,
                account_id,
                Some(&key),
                "secret.leak_reported",
                &dedupe,
                details,
            )
            .await?;
            outbox.notify_one();
            Ok::<(), crate::store::StoreError>(())
        };
        if let Err(e) = found.await {
            tracing::warn!(error = %e, "leak report alert failed");
        }
    });
}
