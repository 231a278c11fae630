//! The webhook worker: claims due outbox rows, delivers each (signed, SSRF-checked, no
//! redirects, a bounded read of the answer), and records the attempt: a 2xx is delivered;
//! anything else is retried after `retry_base` x 2^(attempts - 1), at most an hour apart,
//! until 24 hours after the event, then given up. Rows live in the database, so a restart
//! loses none; a row claimed by a process that died is due again after [`CLAIM`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{watch, Notify};

use super::{sign, target, AlertConfig};
use crate::domain::time_util;
use crate::store::webhooks::{Attempt, DueDelivery};
use crate::store::Store;

/// How long a claimed row is the claimer's (beyond the client's 10 s timeout).
const CLAIM: Duration = Duration::from_secs(60);
/// Rows claimed per round.
const BATCH: i64 = 32;
/// Deliveries are retried for this long after the event.
const GIVE_UP_AFTER_MS: i64 = 24 * 3_600_000;
const MAX_PAUSE_MS: i64 = 3_600_000;
/// Bytes of a receiver's answer read (and kept: none but the status).
const ANSWER_MAX: usize = 4096;

pub async fn run(
    store: Store,
    cfg: AlertConfig,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let client = target::client(cfg.allow_private_targets);
    loop {
        if *stop.borrow() {
            return;
        }
        let now = time_util::now_ms();
        match store
            .claim_deliveries(now, now + CLAIM.as_millis() as i64, BATCH)
            .await
        {
            Ok(due) if !due.is_empty() => {
                let full = due.len() as i64 == BATCH;
                let sends = due.into_iter().map(|d| deliver(&store, &client, &cfg, d));
                futures_util::stream::iter(sends)
                    .buffer_unordered(8)
                    .collect::<Vec<()>>()
                    .await;
                if full {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn deliver(store: &Store, client: &reqwest::Client, cfg: &AlertConfig, d: DueDelivery) {
    let started = Instant::now();
    let result = send(client, cfg, &d).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let now = time_util::now_ms();
    let attempts = d.attempts + 1;
    let pause = (cfg.retry_base.as_millis() as i64)
        .saturating_mul(1i64 << (attempts - 1).clamp(0, 30))
        .min(MAX_PAUSE_MS);
    let (status, error) = match &result {
        Ok(s) => (
            Some(i64::from(*s)),
            (!(200..300).contains(s)).then(|| format!("HTTP {s}")),
        ),
        Err(e) => (None, Some(e.clone())),
    };
    let delivered = error.is_none();
    let a = Attempt {
        delivered,
        failed_for_good: !delivered && now + pause > d.created_at + GIVE_UP_AFTER_MS,
        next_attempt_at: now + pause,
        status,
        latency_ms,
        error: error.as_deref(),
    };
    if let Err(e) = store.record_attempt(d.id, &a).await {
        tracing::warn!(delivery = d.id, error = %e, "recording a webhook attempt failed");
    }
    crate::metrics::webhook_delivery(if delivered { "delivered" } else { "failed" });
}

/// One POST; the answer's status, or why there was none (no URL, secret or body in it).
async fn send(client: &reqwest::Client, cfg: &AlertConfig, d: &DueDelivery) -> Result<u16, String> {
    let url = target::parse(&d.url, cfg.allow_private_targets).map_err(|e| e.to_string())?;
    let t = time_util::now_ms() / 1000;
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header(
            sign::HEADER,
            sign::signature(&d.secret, t, d.payload.as_bytes()),
        )
        .body(d.payload.clone())
        .send()
        .await
        .map_err(describe)?;
    let status = resp.status().as_u16();
    // Read a little of the answer (some servers wait for it to be read), never more.
    let mut body = resp.bytes_stream();
    let mut read = 0;
    while read < ANSWER_MAX {
        match body.next().await {
            Some(Ok(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
    Ok(status)
}

fn describe(e: reqwest::Error) -> String {
    let refused = std::error::Error::source(&e)
        .into_iter()
        .chain(std::iter::successors(std::error::Error::source(&e), |s| {
            s.source()
        }))
        .any(|s| {
            s.downcast_ref::<target::TargetError>().is_some()
                || s.to_string().contains(target::REFUSED_MARK)
        });
    if refused {
        "refused: the host resolves to a non-public address".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "request failed".into()
    }
}
