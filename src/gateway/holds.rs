//! The in-process hold book: reservations without a database write, for SQLite.
//!
//! With SQLite exactly one process serves the database (it holds `<db>.lock`), so holds of
//! requests in flight can live in memory: the database keeps only settled amounts (balance,
//! the keys' day/month spend), written by the usage batch. A reservation checks
//!
//!   settled (from this request's own read of the key row)
//!   + holds in flight (here)
//!   + charges committed after that read began (here, "recent")
//!   + the new amount  <=  limit
//!
//! under one mutex, so concurrent requests cannot together pass a limit. The third term
//! closes the gap between a batch committing and a request whose read started before it:
//! each request notes the commit sequence number *before* its read; charges of batches with a
//! later number may be missing from what it read, so they are counted from memory (counting a
//! charge twice is possible for an instant, and only errs on the safe side).
//! With PostgreSQL several processes share the database, so holds are rows instead
//! (`store::ledger`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{time_util, Credits};
use crate::store::keys::GatewayKey;
use crate::store::ledger::{Reservation, ReserveError};

/// How long committed charges are remembered. A request reserves microseconds after its
/// read; this bound only has to exceed the longest stall between the two.
const RECENT_FOR: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct HoldBook {
    commit_seq: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// key id -> (day, month, amount) of each hold in flight.
    keys: HashMap<i64, Vec<(i64, i64, i64)>>,
    /// account id -> total held.
    accounts: HashMap<i64, i64>,
    recent: VecDeque<Recent>,
}

struct Recent {
    seq: u64,
    at: Instant,
    key_id: i64,
    account_id: i64,
    day: i64,
    month: i64,
    charge: i64,
}

impl HoldBook {
    /// Read before reading the key row; pass to [`HoldBook::reserve`].
    pub fn seen(&self) -> u64 {
        self.commit_seq.load(Ordering::Acquire)
    }

    pub fn reserve(
        &self,
        gk: &GatewayKey,
        seen: u64,
        amount: Credits,
        now_ms: i64,
    ) -> Result<Reservation, ReserveError> {
        let key = &gk.key;
        let day = time_util::day_number(now_ms);
        let month = time_util::month_number(now_ms);
        let amount_m = amount.micros();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (mut day_used, mut month_used, mut account_used) = (0i64, 0i64, 0i64);
        for r in inner.recent.iter().filter(|r| r.seq > seen) {
            if r.key_id == key.id {
                day_used += if r.day == day { r.charge } else { 0 };
                month_used += if r.month == month { r.charge } else { 0 };
            }
            if r.account_id == key.account_id {
                account_used += r.charge;
            }
        }
        for &(d, m, a) in inner
            .keys
            .get(&key.id)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            day_used += if d == day { a } else { 0 };
            month_used += if m == month { a } else { 0 };
        }
        account_used += inner.accounts.get(&key.account_id).copied().unwrap_or(0);
        let today = key.spent_today(now_ms).micros() + day_used;
        let this_month = key.spent_this_month(now_ms).micros() + month_used;
        if key.daily_limit.is_some_and(|l| today + amount_m > l) {
            return Err(ReserveError::DailyLimit);
        }
        if key.monthly_limit.is_some_and(|l| this_month + amount_m > l) {
            return Err(ReserveError::MonthlyLimit);
        }
        let available = gk.balance - gk.reserved - account_used;
        if available <= 0 || available < amount_m {
            return Err(ReserveError::InsufficientCredits);
        }
        inner
            .keys
            .entry(key.id)
            .or_default()
            .push((day, month, amount_m));
        *inner.accounts.entry(key.account_id).or_default() += amount_m;
        Ok(Reservation {
            id: String::new(),
            account_id: key.account_id,
            key_id: key.id,
            amount,
            day,
            month,
            in_db: false,
        })
    }

    /// After a usage batch committed: the holds become remembered charges.
    /// `settled` holds each reservation with the amount charged for it.
    pub fn committed<'a>(&self, settled: impl Iterator<Item = (&'a Reservation, i64)>) {
        let seq = self.commit_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (r, charge) in settled.filter(|(r, _)| !r.in_db) {
            inner.remove_hold(r);
            if charge > 0 {
                inner.recent.push_back(Recent {
                    seq,
                    at: now,
                    key_id: r.key_id,
                    account_id: r.account_id,
                    day: r.day,
                    month: r.month,
                    charge,
                });
            }
        }
        while inner
            .recent
            .front()
            .is_some_and(|r| now.duration_since(r.at) > RECENT_FOR)
        {
            inner.recent.pop_front();
        }
    }

    /// Drops holds whose usage could not be written (nothing was charged).
    pub fn release<'a>(&self, holds: impl Iterator<Item = &'a Reservation>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for r in holds.filter(|r| !r.in_db) {
            inner.remove_hold(r);
        }
    }
}

impl Inner {
    fn remove_hold(&mut self, r: &Reservation) {
        let amount = r.amount.micros();
        if let Some(list) = self.keys.get_mut(&r.key_id) {
            if let Some(i) = list.iter().position(|h| *h == (r.day, r.month, amount)) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                self.keys.remove(&r.key_id);
            }
        }
        if let Some(a) = self.accounts.get_mut(&r.account_id) {
            *a -= amount;
            if *a <= 0 {
                self.accounts.remove(&r.account_id);
            }
        }
    }
}
