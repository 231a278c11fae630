//! The in-process hold book: reservations without a database write, for SQLite.
//!
//! With SQLite exactly one process serves the database (it holds `<db>.lock`), so the holds
//! of requests in flight can live in memory, and the database keeps only settled amounts
//! (balance, the keys' day/month spend), written by the usage applier. A reservation checks
//!
//!   settled, as read with the key row (its account's `settled_seq` then: `seq`)
//!   + holds of requests in flight
//!   + charges of entries numbered above `seq` (journaled, or applied after that read)
//!   + the new amount                                       <=  limit / spendable balance
//!
//! under one mutex, so concurrent requests cannot together pass a limit, and nothing is
//! counted twice: every usage entry has a number n (ascending). Just before it is journaled
//! (`store::usage_journal`), its hold moves here from "in flight" to "settled under n"; when
//! the applier writes it into SQLite, it sets `settled_seq` to n (or to a later entry's
//! number applied in the same transaction) on the row of every account it settles (it
//! updates that row anyway). The key row and its account's `settled_seq` are read by one
//! statement (one snapshot). A hold of a key is always settled with its account, so the
//! account's number covers the key's. A settled charge is forgotten only once it is applied
//! and older than any read that could have missed it.
//! With PostgreSQL several processes share the database, so holds are rows instead
//! (`store::ledger`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{time_util, Credits, KeyId, WorkspaceId};
use crate::store::keys::GatewayKey;
use crate::store::ledger::{Reservation, ReserveError};

/// How long settled charges are remembered once applied. This must exceed the longest gap
/// between a request's key read and its reservation: the gateway reads the key again when
/// the first read is older than `chat::REREAD_AFTER` (a slow upload), so the gap is CPU work
/// and scheduling, far below this. Kept short because the book holds one entry per request
/// for this long (at 28,000 requests/s, 10 s of entries were 50 MiB).
pub const SETTLED_FOR: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct HoldBook {
    inner: Mutex<Inner>,
    /// Every entry numbered up to this is in SQLite.
    applied: AtomicI64,
}

#[derive(Default)]
struct Inner {
    keys: HashMap<KeyId, Book>,
    accounts: HashMap<WorkspaceId, Book>,
    /// When forgettable charges were last dropped (None: never).
    pruned: Option<Instant>,
}

impl Inner {
    /// The key's book and the account's book a hold counts in.
    fn books_of(&mut self, r: &Reservation) -> [&mut Book; 2] {
        [
            self.keys.entry(r.key_id).or_default(),
            self.accounts.entry(r.account_id).or_default(),
        ]
    }
}

/// How often settled charges are pruned: a sweep visits every book.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Holds of one key or one account.
#[derive(Default)]
struct Book {
    /// (day, month, amount) of each request in flight.
    in_flight: Vec<(i64, i64, i64)>,
    /// Settled charges, oldest first (numbers ascending).
    settled: VecDeque<Settled>,
}

struct Settled {
    seq: i64,
    at: Instant,
    day: i64,
    month: i64,
    charge: i64,
}

/// Amounts a book adds on top of what a read at `seq` saw, for `day` and `month`, in total.
fn extra(book: Option<&Book>, seq: i64, day: i64, month: i64) -> (i64, i64, i64) {
    let Some(b) = book else { return (0, 0, 0) };
    let (mut d, mut m, mut all) = (0, 0, 0);
    let settled = b
        .settled
        .iter()
        .rev()
        .take_while(|s| s.seq > seq)
        .map(|s| (s.day, s.month, s.charge));
    for (hd, hm, a) in b.in_flight.iter().copied().chain(settled) {
        d += if hd == day { a } else { 0 };
        m += if hm == month { a } else { 0 };
        all += a;
    }
    (d, m, all)
}

impl Book {
    fn remove_in_flight(&mut self, r: &Reservation) {
        let h = (r.day, r.month, r.amount.micros());
        if let Some(i) = self.in_flight.iter().position(|x| *x == h) {
            self.in_flight.swap_remove(i);
        }
    }

    fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.settled.is_empty()
    }
}

/// What a key read (at its account's `settled_seq`) does not include yet, for reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outstanding {
    /// Held or charged against the key's day / month beyond the read.
    pub key_day: i64,
    pub key_month: i64,
    /// The account's holds of requests in flight.
    pub account_held: i64,
    /// The account's holds in flight and charges beyond the read: what its spendable
    /// balance lacks.
    pub account_extra: i64,
}

impl HoldBook {
    /// What `gk` does not include: holds in flight and charges settled after its read.
    pub fn outstanding(&self, gk: &GatewayKey, now_ms: i64) -> Outstanding {
        let day = time_util::day_number(now_ms);
        let month = time_util::month_number(now_ms);
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (key_day, key_month, _) = extra(guard.keys.get(&gk.key.id), gk.settled_seq, day, month);
        let account = guard.accounts.get(&gk.key.account_id);
        let (_, _, account_extra) = extra(account, gk.settled_seq, day, month);
        let account_held = account.map_or(0, |b| b.in_flight.iter().map(|h| h.2).sum());
        Outstanding {
            key_day,
            key_month,
            account_held,
            account_extra,
        }
    }

    /// Holds `amount` for a request whose key row (with its account's `settled_seq`) is `gk`.
    pub fn reserve(
        &self,
        gk: &GatewayKey,
        amount: Credits,
        now_ms: i64,
    ) -> Result<Reservation, ReserveError> {
        let key = &gk.key;
        let day = time_util::day_number(now_ms);
        let month = time_util::month_number(now_ms);
        let amount_m = amount.micros();
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        let (key_day, key_month, _) = extra(inner.keys.get(&key.id), gk.settled_seq, day, month);
        let (_, _, account_all) = extra(
            inner.accounts.get(&key.account_id),
            gk.settled_seq,
            day,
            month,
        );
        if key
            .daily_limit
            .is_some_and(|l| key.spent_today(now_ms).micros() + key_day + amount_m > l.micros())
        {
            return Err(ReserveError::DailyLimit);
        }
        if key.monthly_limit.is_some_and(|l| {
            key.spent_this_month(now_ms).micros() + key_month + amount_m > l.micros()
        }) {
            return Err(ReserveError::MonthlyLimit);
        }
        let available = gk.balance.micros() - gk.reserved.micros() - account_all;
        if available <= 0 || available < amount_m {
            return Err(ReserveError::InsufficientCredits);
        }
        let hold = (day, month, amount_m);
        inner.keys.entry(key.id).or_default().in_flight.push(hold);
        inner
            .accounts
            .entry(key.account_id)
            .or_default()
            .in_flight
            .push(hold);
        Ok(Reservation::held(key, amount, day, month))
    }

    /// Called by the usage writer just before it journals the entries numbered `seq`: their
    /// holds become charges settled under `seq`.
    pub fn settling<'a>(
        &self,
        seq: i64,
        settled: impl Iterator<Item = (&'a Reservation, Credits)>,
    ) {
        let now = Instant::now();
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        for (r, charge) in settled.filter(|(r, _)| r.in_memory()) {
            let s = || Settled {
                seq,
                at: now,
                day: r.day,
                month: r.month,
                charge: charge.micros(),
            };
            for book in inner.books_of(r) {
                book.remove_in_flight(r);
                book.settled.push_back(s());
            }
        }
        if inner
            .pruned
            .is_some_and(|t| now.duration_since(t) < PRUNE_EVERY)
        {
            return;
        }
        inner.pruned = Some(now);
        let applied = self.applied.load(Ordering::Acquire);
        let stale = |b: &mut Book| {
            while b
                .settled
                .front()
                .is_some_and(|s| s.seq <= applied && now.duration_since(s.at) > SETTLED_FOR)
            {
                b.settled.pop_front();
            }
            !b.is_empty()
        };
        inner.keys.retain(|_, b| stale(b));
        inner.accounts.retain(|_, b| stale(b));
    }

    /// Every entry numbered up to `seq` is now in SQLite.
    pub fn applied(&self, seq: i64) {
        self.applied.fetch_max(seq, Ordering::AcqRel);
    }

    /// Charges of an account settled under numbers above `seq`, which a read at `seq` did not
    /// see.
    pub fn settled_after(&self, account_id: WorkspaceId, seq: i64) -> Credits {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let charges = guard.accounts.get(&account_id).map_or(0, |b| {
            b.settled
                .iter()
                .rev()
                .take_while(|s| s.seq > seq)
                .map(|s| s.charge)
                .sum()
        });
        Credits::from_micros(charges)
    }

    /// The entries numbered `seq` were not journaled: their holds are in flight again.
    pub fn unsettle<'a>(&self, seq: i64, holds: impl Iterator<Item = &'a Reservation>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        for r in holds.filter(|r| r.in_memory()) {
            for book in inner.books_of(r) {
                let batch_entry = book
                    .settled
                    .iter()
                    .rposition(|s| s.seq == seq && (s.day, s.month) == (r.day, r.month));
                if let Some(i) = batch_entry {
                    book.settled.remove(i);
                    book.in_flight.push((r.day, r.month, r.amount.micros()));
                }
            }
        }
    }

    /// Drops holds in flight whose usage could not be written (nothing was charged).
    pub fn release<'a>(&self, holds: impl Iterator<Item = &'a Reservation>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        for r in holds.filter(|r| r.in_memory()) {
            for book in inner.books_of(r) {
                book.remove_in_flight(r);
            }
        }
    }
}
