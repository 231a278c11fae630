//! Budgets for refused requests, so that requests that can spend nothing cannot cost
//! without bound either: each refused request writes a usage row and its rollup, and an
//! unauthenticated one costs a key lookup.
//!
//! - **Per key**: requests the gateway refuses after authentication (bad JSON, unknown or
//!   forbidden model, limit reached, no credits, ...) are recorded, each with its row, up to
//!   a burst of [`KEY_BURST`] and then [`KEY_PER_MINUTE`] a minute. Beyond that a refusal
//!   is answered 429 `too_many_refused_requests` (with `Retry-After`) and not recorded.
//!   Requests that are served never touch this budget: a key whose refusals tripped it
//!   still serves every request it can pay for.
//! - **Per client address**: failed authentications (no key, malformed, unknown, revoked)
//!   up to a burst of [`ADDRESS_BURST`], then [`ADDRESS_PER_MINUTE`] a minute; beyond,
//!   429 `too_many_failed_authentications`. The key is always looked up first, so a valid
//!   key behind the same address (a NAT, a proxy) is never refused for someone else's
//!   failures.
//!
//! In-process state (like the login throttle): with several processes each enforces its
//! own budget, which still bounds the cost per process.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::domain::ErrorCode;

pub const KEY_BURST: u32 = 60;
pub const KEY_PER_MINUTE: u32 = 60;
/// Generous: a client still retrying a key that was just deleted should see its 401s (a
/// 429 invites retries); this trips on floods only.
pub const ADDRESS_BURST: u32 = 1000;
pub const ADDRESS_PER_MINUTE: u32 = 600;

/// Keys tracked before idle entries are dropped (bounds memory under a spray of keys).
const RETAIN_AT: usize = 100_000;

/// Leaked-token reports per client address: a scanner sends few, each of many tokens.
pub const LEAK_REPORT_BURST: u32 = 30;
pub const LEAK_REPORTS_PER_MINUTE: u32 = 30;

pub struct RefusalBudgets {
    keys: DefaultKeyedRateLimiter<i64>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
    leak_reports: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

fn quota(burst: u32, per_minute: u32) -> Quota {
    let n = |v: u32| NonZeroU32::new(v.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(n(per_minute)).allow_burst(n(burst))
}

impl Default for RefusalBudgets {
    fn default() -> Self {
        RefusalBudgets {
            keys: RateLimiter::keyed(quota(KEY_BURST, KEY_PER_MINUTE)),
            addresses: RateLimiter::keyed(quota(ADDRESS_BURST, ADDRESS_PER_MINUTE)),
            leak_reports: RateLimiter::keyed(quota(LEAK_REPORT_BURST, LEAK_REPORTS_PER_MINUTE)),
            clock: DefaultClock::default(),
        }
    }
}

impl RefusalBudgets {
    /// Takes one refusal from the key's budget; `Err` (the 429 to answer instead) when it is
    /// spent.
    pub fn refused_for_key(&self, key_id: i64) -> Result<(), ApiError> {
        Self::take(&self.keys, &key_id, &self.clock).map_err(|wait| {
            ApiError::too_many(
                ErrorCode::TooManyRefusedRequests,
                "This API key made too many requests that were refused. Fix the request (see earlier errors) and retry later.",
                wait,
            )
        })
    }

    /// Takes one failed authentication from the address's budget.
    pub fn failed_auth_from(&self, address: IpAddr) -> Result<(), ApiError> {
        Self::take(&self.addresses, &address, &self.clock).map_err(|wait| {
            ApiError::too_many(
                ErrorCode::TooManyFailedAuthentications,
                "Too many requests with a missing or invalid API key from this address. Retry later.",
                wait,
            )
        })
    }

    /// Takes one leaked-token report from the address's budget.
    pub fn leak_report_from(&self, address: IpAddr) -> Result<(), ApiError> {
        Self::take(&self.leak_reports, &address, &self.clock).map_err(|wait| {
            ApiError::too_many(
                ErrorCode::TooManyReports,
                "Too many leaked-token reports from this address. Retry later.",
                wait,
            )
        })
    }

    /// A failed authentication's answer: `e` itself while the client address has budget,
    /// else the 429. Only 401s count (a database failure is not the client's).
    pub fn after_failed_auth(&self, req: &actix_web::HttpRequest, e: ApiError) -> ApiError {
        match req.peer_addr() {
            Some(peer) if e.status == actix_web::http::StatusCode::UNAUTHORIZED => {
                self.failed_auth_from(peer.ip()).err().unwrap_or(e)
            }
            _ => e,
        }
    }

    fn take<K: std::hash::Hash + Eq + Clone>(
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        clock: &DefaultClock,
    ) -> Result<(), Duration> {
        if limiter.len() > RETAIN_AT {
            limiter.retain_recent();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_budget_trips_alone() {
        let b = RefusalBudgets::default();
        for _ in 0..KEY_BURST {
            assert!(b.refused_for_key(1).is_ok());
        }
        let e = b.refused_for_key(1).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.retry_after.is_some_and(|s| s >= 1));
        assert!(b.refused_for_key(2).is_ok(), "another key is untouched");
    }
}
