//! The webhook worker: delivers outbox rows (signed, SSRF-checked, no redirects, a bounded
//! read of the answer: [`send`]) and records each attempt: a 2xx is delivered; anything
//! else is retried after `retry_base` x 2^(attempts - 1), at most an hour apart, until 24
//! hours after the event, then given up. Rows live in the database, so a restart loses
//! none.
//!
//! One tenant's receiver must not hold anyone else's alerts (security issue, item 2: one
//! workspace's 40 test events to a receiver answering after 9 s delayed another's next
//! delivery from 0.11 s to 44 s, when the worker took the 32 oldest due rows of all
//! workspaces and sent them 8 at a time). So every endpoint is a lane of its own:
//!
//! - **Fair turns.** Each round asks for endpoints with a due row (`due_endpoints`), each
//!   once however many rows it has, the longest waiting first; a flood of rows for one
//!   endpoint is one turn in the queue, not a thousand.
//! - **A lane per endpoint, a pool per process.** A turn leases the endpoint (a conditional
//!   update of its row, `claimed_until`, for [`CLAIM`]) and claims at most
//!   [`PER_ENDPOINT`] of its rows under the lease. The lease is in the database, so no
//!   other process sends to that endpoint meanwhile: at most two requests are in flight to
//!   one receiver, across processes. The rows of all lanes share one pool of [`POOL`]
//!   deliveries per process; a slow receiver holds two of them while every other endpoint
//!   gets its turn as soon as it has a due row (the next round starts whenever a lane ends,
//!   an event is queued, or `poll` passes). A lane ends when its rows are recorded, and
//!   releases its lease; a lease that dies with its process ends by itself after
//!   [`CLAIM`], when its rows are due again.
//! - **Circuit breaker.** The endpoint's row counts failed attempts in a row; from
//!   [`BREAK_AFTER`] on it is paused (`paused_until`: `retry_base` x 2^(failures - 5), at
//!   most an hour): none of its rows is claimed meanwhile, by any process, and the first
//!   attempt after a pause is one row alone (a probe). A delivery closes it. Rows of a
//!   paused endpoint that pass their 24 hours are given up by a sweep every minute, since
//!   no attempt does. "Send test event" ends a pause (its next attempt is still a probe).
//! - **Test events have a budget** (`web::webhooks`): at most a few wait per endpoint.
//! - A deleted endpoint's or workspace's pending rows are dropped with it, and an attempt
//!   in flight meanwhile records nothing (`record_attempt` changes pending rows only).

mod send;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::{target, AlertConfig};
use crate::domain::time_util;
use crate::store::webhooks::{Attempt, DueDelivery, Lease};
use crate::store::{Result, Store};

/// How long a lease, and the rows claimed under it, are the worker's (beyond the client's
/// 10 s timeout).
const CLAIM: Duration = Duration::from_secs(60);
/// Deliveries in flight at once in one process, all endpoints together.
const POOL: usize = 16;
/// Deliveries in flight at once to one endpoint, across processes.
pub const PER_ENDPOINT: usize = 2;
/// Failed attempts in a row after which an endpoint is paused.
pub const BREAK_AFTER: i64 = 5;
/// Deliveries are retried for this long after the event.
const GIVE_UP_AFTER_MS: i64 = 24 * 3_600_000;
const MAX_PAUSE_MS: i64 = 3_600_000;
/// How often rows past their 24 hours that no attempt gave up are given up.
const GIVE_UP_EVERY: Duration = Duration::from_secs(60);

pub async fn run(
    store: Store,
    cfg: AlertConfig,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let client = target::client(cfg.allow_private_targets);
    let pool = Arc::new(Semaphore::new(POOL));
    let mut lanes = JoinSet::new();
    let mut swept: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        if swept.is_none_or(|t| t.elapsed() >= GIVE_UP_EVERY) {
            swept = Some(Instant::now());
            let now = time_util::now_ms();
            if let Err(e) = store.give_up_deliveries(now - GIVE_UP_AFTER_MS, now).await {
                tracing::warn!(error = %e, "giving up old webhook deliveries failed");
            }
        }
        if let Err(e) = open_lanes(&store, &client, &cfg, &pool, &mut lanes).await {
            tracing::warn!(error = %e, "claiming webhook deliveries failed");
        }
        tokio::select! {
            _ = wake.notified() => {}
            Some(ended) = lanes.join_next() => {
                if let Err(e) = ended {
                    tracing::warn!(error = %e, "a webhook lane failed");
                }
            }
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = stop.changed() => break,
        }
    }
    // Lanes in flight record their attempts and release their leases (each within the
    // client's timeout) while the runtime lives on; a process that exits first leaves them
    // to the lease's end.
    while lanes.join_next().await.is_some() {}
}

/// Leases due endpoints while the pool has room, each with up to [`PER_ENDPOINT`] rows
/// (one for a probe after a pause), and starts a lane for each.
async fn open_lanes(
    store: &Store,
    client: &reqwest::Client,
    cfg: &AlertConfig,
    pool: &Arc<Semaphore>,
    lanes: &mut JoinSet<()>,
) -> Result<()> {
    let free = pool.available_permits();
    if free == 0 {
        return Ok(());
    }
    let now = time_util::now_ms();
    let until = now + CLAIM.as_millis() as i64;
    for endpoint in store.due_endpoints(now, free as i64).await? {
        // Only this loop takes permits, so what is free now stays free until taken below.
        let room = pool.available_permits().min(PER_ENDPOINT);
        if room == 0 {
            break;
        }
        let Some(lease) = store.lease_endpoint(endpoint, now, until).await? else {
            continue;
        };
        let want = if lease.failures >= BREAK_AFTER {
            1
        } else {
            room
        };
        let rows = match store.claim_deliveries(&lease, now, want as i64).await {
            Ok(rows) if !rows.is_empty() => rows,
            claimed => {
                store.release_endpoint(&lease).await?;
                claimed?;
                continue;
            }
        };
        let permits = pool
            .clone()
            .acquire_many_owned(rows.len() as u32)
            .await
            .expect("the pool is never closed");
        lanes.spawn(lane(
            store.clone(),
            client.clone(),
            cfg.clone(),
            lease,
            rows,
            permits,
        ));
    }
    Ok(())
}

/// Delivers a lease's rows at once, then releases it (and its share of the pool).
async fn lane(
    store: Store,
    client: reqwest::Client,
    cfg: AlertConfig,
    lease: Lease,
    rows: Vec<DueDelivery>,
    _permits: OwnedSemaphorePermit,
) {
    let sends = rows
        .into_iter()
        .map(|d| deliver(&store, &client, &cfg, &lease, d));
    futures_util::future::join_all(sends).await;
    if let Err(e) = persist(|| store.release_endpoint(&lease)).await {
        tracing::warn!(endpoint = lease.endpoint_id, error = %e, "releasing a webhook lane failed");
    }
}

async fn deliver(
    store: &Store,
    client: &reqwest::Client,
    cfg: &AlertConfig,
    lease: &Lease,
    d: DueDelivery,
) {
    let started = Instant::now();
    let result = send::send(client, cfg, &d).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let now = time_util::now_ms();
    let pause = backoff(cfg.retry_base, d.attempts);
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
    let breaker = |failures: i64| {
        (failures >= BREAK_AFTER).then(|| now + backoff(cfg.retry_base, failures - BREAK_AFTER))
    };
    match persist(|| store.record_attempt(lease, d.id, &a, &breaker)).await {
        Ok(failures) if failures == BREAK_AFTER => tracing::info!(
            endpoint = lease.endpoint_id,
            failures,
            "webhook endpoint paused after failures in a row"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(delivery = d.id, error = %e, "recording a webhook attempt failed"),
    }
    crate::metrics::webhook_delivery(if delivered { "delivered" } else { "failed" });
}

/// A lane's write, tried up to 5 times, 50 ms, 100 ms, … apart: a lost attempt record
/// means the row is sent again once its claim ends, and a lost release idles the lane until
/// then. A connection that failed leaves the pool, so a retry gets another (at a graceful
/// stop, connections the HTTP workers opened fail with their runtimes). A record retried
/// after a commit whose answer was lost changes no row (it is no longer this claim's) but
/// counts the failure twice.
async fn persist<T, W: std::future::Future<Output = Result<T>>>(
    mut write: impl FnMut() -> W,
) -> Result<T> {
    let mut pause = Duration::from_millis(50);
    for _ in 1..5 {
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) => tracing::debug!(error = %e, "a webhook lane's write failed; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    write().await
}

/// `base` x 2^`doublings`, in ms, at most an hour.
fn backoff(base: Duration, doublings: i64) -> i64 {
    (base.as_millis() as i64)
        .saturating_mul(1i64 << doublings.clamp(0, 30))
        .min(MAX_PAUSE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 0), 30_000);
        assert_eq!(backoff(base, 1), 60_000);
        assert_eq!(backoff(base, 6), 1_920_000);
        assert_eq!(backoff(base, 7), MAX_PAUSE_MS);
        assert_eq!(backoff(base, 400), MAX_PAUSE_MS);
        assert_eq!(backoff(base, -3), 30_000);
    }
}
