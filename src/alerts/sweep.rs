//! Time-driven alerts: keys expiring within 7 days and secrets due for rotation (every ten
//! minutes, and at start), and the hourly email digest (looked for every poll).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{watch, Notify};

use super::{digest, event::emit, AlertConfig};
use crate::domain::time_util;
use crate::mail::Mailer;
use crate::store::{Result, Store};

const EVERY: Duration = Duration::from_secs(600);
const WEEK_MS: i64 = 7 * 86_400_000;

pub async fn run(
    store: Store,
    cfg: AlertConfig,
    mailer: Option<Arc<Mailer>>,
    outbox: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_sweep: Option<Instant> = None;
    loop {
        if last_sweep.is_none_or(|t| t.elapsed() >= EVERY) {
            last_sweep = Some(Instant::now());
            if let Err(e) = sweep(&store, cfg.rotate_after_days).await {
                tracing::warn!(error = %e, "expiry and rotation alerts failed");
            }
            outbox.notify_one();
        }
        if let Some(mailer) = &mailer {
            if let Err(e) = digest::send_due(&store, mailer).await {
                tracing::warn!(error = %e, "alert digests failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn sweep(store: &Store, rotate_after_days: u32) -> Result<()> {
    let now = time_util::now_ms();
    for (account_id, key_id, expires_at) in store.keys_expiring(now, now + WEEK_MS).await? {
        let Ok(key) = store.key(account_id, key_id).await else {
            continue;
        };
        let dedupe = format!("expiring:{key_id}:{expires_at}");
        let details = json!({"expires_at": time_util::format_rfc3339(expires_at)});
        emit(
            store,
            account_id,
            Some(&key),
            "key.expiring",
            &dedupe,
            details,
        )
        .await?;
    }
    if rotate_after_days > 0 {
        let before = now - i64::from(rotate_after_days) * 86_400_000;
        for (account_id, key_id, made_at) in store.keys_rotation_due(before).await? {
            let Ok(key) = store.key(account_id, key_id).await else {
                continue;
            };
            let dedupe = format!("rotation:{key_id}:{made_at}");
            let details = json!({"secret_created_at": time_util::format_rfc3339(made_at),
                                 "rotate_after_days": rotate_after_days});
            emit(
                store,
                account_id,
                Some(&key),
                "key.rotation_due",
                &dedupe,
                details,
            )
            .await?;
        }
    }
    Ok(())
}
