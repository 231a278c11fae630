//! Per-key rate limits set by the owner: requests per minute (`rpm_limit`) and requests in
//! flight (`concurrency_limit`). Beyond either: 429 `rate_limit_exceeded` with
//! `Retry-After` and `X-RateLimit-Limit` / `-Remaining` / `-Reset` (seconds).
//!
//! - SQLite (one process, the file lock sees to it): in memory. Requests per minute with
//!   `governor` (GCRA: up to `rpm_limit` at once, then one every 60/`rpm_limit` s); in-flight
//!   requests counted under a mutex.
//! - PostgreSQL (many processes): in the database, so the limit is the key's and not each
//!   process's (`store::rate_limits`): a per-key per-UTC-minute counter admitted by one
//!   conditional upsert, and per-process in-flight rows summed under the key's advisory lock.
//!   A dead process's in-flight rows go with its other holds.
//!
//! A slot is held by the request's context (`chat::outcome::Ctx`), so it is given back when
//! the request ends, streams included. Keys without limits never reach this module's state.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::error::{ApiError, RateHeaders};
use crate::domain::ErrorCode;
use crate::store::keys::KeyRow;
use crate::store::PgStore;

type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// One key's in-memory state (SQLite).
struct Local {
    rpm: u32,
    limiter: Direct,
}

pub struct RateLimits {
    /// PostgreSQL: the shared counters; None on SQLite.
    shared: Option<PgStore>,
    minutes: Mutex<HashMap<i64, Local>>,
    in_flight: Mutex<HashMap<i64, u32>>,
    clock: DefaultClock,
}

/// A request's in-flight slot, given back when dropped.
pub struct Slot {
    limits: Arc<RateLimits>,
    key_id: i64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        match &self.limits.shared {
            Some(pg) => {
                let (pg, key) = (pg.clone(), self.key_id);
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Err(e) = pg.give_slot(key).await {
                            tracing::warn!(error = %e, "could not give back an in-flight slot");
                        }
                    });
                }
            }
            None => {
                let mut map = lock(&self.limits.in_flight);
                if let Some(n) = map.get_mut(&self.key_id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        map.remove(&self.key_id);
                    }
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn limited(what: &str, headers: RateHeaders) -> ApiError {
    let mut e = ApiError::too_many(
        ErrorCode::RateLimitExceeded,
        &format!("This API key's {what} limit is reached. Retry after the time in Retry-After."),
        std::time::Duration::from_secs(headers.reset_secs.saturating_sub(1)),
    );
    e.rate = Some(Box::new(headers));
    e
}

impl RateLimits {
    pub fn new(shared: Option<PgStore>) -> Self {
        RateLimits {
            shared,
            minutes: Mutex::default(),
            in_flight: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Admits the request within the key's limits: its in-flight slot (if the key has a
    /// concurrency limit), or the 429 to answer.
    pub async fn admit(
        self: &Arc<Self>,
        key: &KeyRow,
        now_ms: i64,
    ) -> Result<Option<Slot>, ApiError> {
        if let Some(rpm) = key.rpm_limit.and_then(|n| u32::try_from(n).ok()) {
            self.count_request(key.id.0, rpm, now_ms).await?;
        }
        match key.concurrency_limit.and_then(|n| u32::try_from(n).ok()) {
            Some(limit) => self.take_slot(key.id.0, limit).await.map(Some),
            None => Ok(None),
        }
    }

    async fn count_request(&self, key_id: i64, rpm: u32, now_ms: i64) -> Result<(), ApiError> {
        let limit = u64::from(rpm);
        if let Some(pg) = &self.shared {
            let minute = now_ms.div_euclid(60_000);
            let reset_secs = u64::try_from(60 - now_ms.rem_euclid(60_000) / 1000).unwrap_or(60);
            let counted = pg
                .count_request(key_id, minute, i64::from(rpm))
                .await
                .map_err(internal)?;
            return match counted {
                Some(_) => Ok(()),
                None => Err(limited(
                    "requests-per-minute",
                    RateHeaders {
                        limit,
                        remaining: 0,
                        reset_secs,
                    },
                )),
            };
        }
        let mut map = lock(&self.minutes);
        let entry = map.entry(key_id).or_insert_with(|| Local::new(rpm));
        if entry.rpm != rpm {
            *entry = Local::new(rpm);
        }
        match entry.limiter.check() {
            Ok(_) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(limited(
                    "requests-per-minute",
                    RateHeaders {
                        limit,
                        remaining: 0,
                        reset_secs: wait.as_secs() + 1,
                    },
                ))
            }
        }
    }

    async fn take_slot(self: &Arc<Self>, key_id: i64, limit: u32) -> Result<Slot, ApiError> {
        let refused = || {
            limited(
                "concurrent-requests",
                RateHeaders {
                    limit: u64::from(limit),
                    remaining: 0,
                    reset_secs: 1,
                },
            )
        };
        if let Some(pg) = &self.shared {
            if !pg
                .take_slot(key_id, i64::from(limit))
                .await
                .map_err(internal)?
            {
                return Err(refused());
            }
        } else {
            let mut map = lock(&self.in_flight);
            let n = map.entry(key_id).or_insert(0);
            if *n >= limit {
                return Err(refused());
            }
            *n += 1;
        }
        Ok(Slot {
            limits: self.clone(),
            key_id,
        })
    }
}

impl Local {
    fn new(rpm: u32) -> Self {
        let n = NonZeroU32::new(rpm).unwrap_or(NonZeroU32::MIN);
        Local {
            rpm,
            limiter: RateLimiter::direct(Quota::per_minute(n))
                .with_middleware::<StateInformationMiddleware>(),
        }
    }
}

fn internal(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "rate limit counter failed");
    ApiError::internal()
}
