//! Budget leases (PostgreSQL): holds served from memory, limits still exact across processes.
//!
//! A per-request reservation row costs a transaction on the key's and the account's rows for
//! every request, and every request of a hot key queues on those two row locks (and behind
//! the group commit, which holds them until its WAL flush). Instead, a process **leases** a
//! slice of the key's and its account's headroom in one transaction ([`PgStore::take_lease`]):
//! the slice is added to the key's day/month counters and to the account's `reserved`, under
//! the same conditions as a reservation (`spend + slice <= limit`, `balance - reserved >=
//! slice`), and recorded as a row of `leases` owned by the process's instance id. Holds are
//! then taken from the slice in memory ([`LeaseBook`]), under one mutex, with no I/O.
//!
//! Why limits stay exact with several processes: the database counts every slice as spent
//! (key) and reserved (account) from the moment it is leased, so the sum of all processes'
//! slices, holds and settled charges can never pass a limit; a process serves a hold only
//! from its own slice's free part. Slices shrink as a limit nears: a slice is at most
//! 1/[`HEADROOM_SHARE`] of the remaining headroom, and at least the hold that asked for it, so
//! the last credits go one hold at a time, as with reservations. Unused parts go back
//! after [`IDLE_RETURN`] without a request, when a read endpoint or a dashboard page of the
//! account is served (so an account at rest shows `reserved` 0), and when the day or month
//! changes. A process that dies keeps its slices until the liveness sweep of another process
//! (every 10 s, and at start) finds its advisory lock free and releases them
//! (`PgStore::sweep_dead_instances`).
//!
//! Settlement: the usage batch moves the charge on the lease row alone (`amount` down by it,
//! `charged` up by it), in the same statement as the usage row; the key's counters already
//! count the charge (it was part of the slice), and the account row is not touched, so two
//! processes' batches never queue on the account's row lock (migration 0019). The account's
//! `balance` and `reserved` both still include the charge, so `balance - reserved`, what can
//! be leased or reserved, is exact; readers show both net of the account's unfolded charges
//! (`store::accounts::unfolded!`), and every transaction here that holds the account row
//! anyway (top-up, give-back, the release of a dead process's leases) folds its process's
//! charges into it ([`FOLD_CHARGES`]). The writer then tells the book
//! ([`PgStore::leases_settled`]): the hold leaves, the charge leaves the slice, the rest of
//! the hold is free again. Every transaction here locks key, then account, then lease rows,
//! like the usage batch (no deadlocks). A lease row is deleted only once nothing is left in
//! it, held or charged, so a batch's charge always finds its row.

use std::collections::HashMap;
use std::sync::Arc;

use super::keys::{KeyRow, KeyStatus};
use super::ledger::{HoldSource, Reservation, ReserveError};
use super::usage::UsageEntry;
use super::{PgStore, Result};
use crate::domain::{time_util, Credits, LeaseId};

mod book;
mod give_back;

use book::{Bucket, Take, HEADROOM_SHARE, SLICE_HOLDS};
pub use book::{LeaseBook, IDLE_RETURN};

/// Folds what usage batches charged against a process's (`$2`) leases on an account (`$1`)
/// into the account row: `balance` and `reserved` down by it, each lease's `charged` down by
/// what was folded (migration 0019). `balance - reserved` does not change. Run in a
/// transaction that holds the account's row already: the lease rows are locked after it,
/// in the order every transaction here takes (key, account, lease).
const FOLD_CHARGES: &str = "with f as (select id, charged from leases \
      where account_id = $1 and instance_id = $2 and charged <> 0 for update), \
    z as (update leases set charged = leases.charged - f.charged from f where leases.id = f.id) \
    update accounts set balance = case when balance < s.c then 0 else balance - s.c end, \
      reserved = case when reserved < s.c then 0 else reserved - s.c end \
    from (select cast(coalesce(sum(charged), 0) as bigint) as c from f) as s \
    where accounts.id = $1 and s.c <> 0";

async fn fold_charges(tx: &mut sqlx::PgConnection, account_id: i64, instance: i64) -> Result<()> {
    sqlx::query(FOLD_CHARGES)
        .bind(account_id)
        .bind(instance)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The counters of a key, locked for a top-up; its status decoded here, never compared as
/// a string.
#[derive(sqlx::FromRow)]
struct KeyCounters {
    #[sqlx(try_from = "String")]
    status: KeyStatus,
    daily_limit: Option<i64>,
    monthly_limit: Option<i64>,
    spend_day: i64,
    day_spend: i64,
    spend_month: i64,
    month_spend: i64,
}

impl PgStore {
    /// A hold served from this process's lease on the key, topping the lease up (one
    /// transaction) when its free part does not cover the hold.
    pub(crate) async fn reserve_leased(
        &self,
        book: &Arc<LeaseBook>,
        key: &KeyRow,
        amount: Credits,
        now_ms: i64,
    ) -> Result<Reservation, ReserveError> {
        let day = time_util::day_number(now_ms);
        let month = time_util::month_number(now_ms);
        let bucket = (key.id.0, day, month);
        let hold = amount.micros();
        let need = hold.max(1);
        let reservation = |lease: i64| Reservation {
            source: HoldSource::Lease(LeaseId(lease)),
            ..Reservation::held(key, amount, day, month)
        };
        loop {
            let refill = match book.take(bucket, key.account_id.0, hold, need) {
                Take::Taken(id, prefetch) => {
                    if prefetch {
                        self.spawn_top_up(book.clone(), key.account_id.0, bucket, need);
                    }
                    return Ok(reservation(id));
                }
                Take::Short(refill) => refill,
            };
            let _one_at_a_time = refill.lock().await;
            let shortfall = need - book.free(bucket);
            if shortfall <= 0 {
                continue; // Topped up while this request waited.
            }
            let want = shortfall.max(need.saturating_mul(SLICE_HOLDS));
            let (id, granted) = self
                .take_lease(
                    key.id.0,
                    key.account_id.0,
                    book.lease_id(bucket),
                    (day, month),
                    (shortfall, want),
                    false,
                    now_ms,
                )
                .await?;
            book.granted(bucket, id, granted);
        }
    }

    /// Tops a lease up before it runs dry, only while the headroom is ample (near a limit,
    /// slices are taken by the requests that need them, so none sits unused here).
    fn spawn_top_up(&self, book: Arc<LeaseBook>, account_id: i64, bucket: Bucket, need: i64) {
        let store = self.clone();
        tokio::spawn(async move {
            let refill = match book.lock().get(&bucket) {
                Some(l) => l.refill.clone(),
                None => return,
            };
            let _one_at_a_time = refill.lock().await;
            let want = need.saturating_mul(SLICE_HOLDS);
            let (key_id, day, month) = bucket;
            match store
                .take_lease(
                    key_id,
                    account_id,
                    book.lease_id(bucket),
                    (day, month),
                    (want, want),
                    true,
                    time_util::now_ms(),
                )
                .await
            {
                Ok((id, granted)) => book.granted(bucket, id, granted),
                Err(ReserveError::Store(e)) => tracing::warn!(error = %e, "lease top-up failed"),
                Err(_) => {}
            }
            book.refilled(bucket);
        });
    }

    /// One transaction: locks the key's and the account's rows, and leases at least `need`
    /// (`amounts.0`) and at most `want` (`amounts.1`), capped at 1/[`HEADROOM_SHARE`] of the
    /// headroom; refused as a reservation would be when the headroom is below `need`.
    /// `ample_only` (background top-up): leases `want` only if that is within the share,
    /// else nothing. Returns the lease row's id and the amount granted.
    ///
    /// Long on purpose: one transaction whose statements must run in lock order (key,
    /// account, lease) with the headroom arithmetic between them; split, the order and the
    /// conditions would live in different places.
    #[allow(clippy::too_many_arguments)]
    async fn take_lease(
        &self,
        key_id: i64,
        account_id: i64,
        lease_id: Option<i64>,
        (day, month): (i64, i64),
        (need, want): (i64, i64),
        ample_only: bool,
        now_ms: i64,
    ) -> Result<(i64, i64), ReserveError> {
        let pool = &self.pool;
        let mut tx = pool.begin().await?;
        let row: Option<KeyCounters> = sqlx::query_as(
            "select status, daily_limit, monthly_limit, spend_day, day_spend, spend_month, month_spend \
             from api_keys where id = $1 for update",
        )
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(KeyCounters {
            status,
            daily_limit: daily,
            monthly_limit: monthly,
            spend_day,
            day_spend,
            spend_month,
            month_spend,
        }) = row
        else {
            tx.rollback().await?;
            return Err(ReserveError::KeyInactive);
        };
        let (balance, reserved): (i64, i64) =
            sqlx::query_as("select balance, reserved from accounts where id = $1 for update")
                .bind(account_id)
                .fetch_one(&mut *tx)
                .await?;
        // Counters of a passed bucket read as zero (as in `RESERVE_KEY`).
        let day_spent = if spend_day == day { day_spend } else { 0 };
        let month_spent = if spend_month == month { month_spend } else { 0 };
        let day_room = daily.map_or(i64::MAX, |l| l - day_spent);
        let month_room = monthly.map_or(i64::MAX, |l| l - month_spent);
        let account_room = balance - reserved;
        let room = day_room.min(month_room).min(account_room);
        let decision = if status != KeyStatus::Active {
            Err(ReserveError::KeyInactive)
        } else if ample_only {
            Ok(if room / HEADROOM_SHARE >= want {
                want
            } else {
                0
            })
        } else if day_room < need {
            Err(ReserveError::DailyLimit)
        } else if month_room < need {
            Err(ReserveError::MonthlyLimit)
        } else if account_room < need || account_room <= 0 {
            Err(ReserveError::InsufficientCredits)
        } else {
            Ok(need.max(want.min(room / HEADROOM_SHARE)).min(room))
        };
        // Roll back explicitly: a dropped transaction's rollback waits for the connection's
        // next use, and until then the key and account rows stay locked.
        let grant = match decision {
            Ok(g) if g > 0 => g,
            Ok(_) => {
                tx.rollback().await?;
                return Ok((lease_id.unwrap_or(0), 0));
            }
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        };
        sqlx::query(
            "update api_keys set spend_day = $1, day_spend = $2, spend_month = $3, month_spend = $4 \
             where id = $5",
        )
        .bind(day)
        .bind(day_spent + grant)
        .bind(month)
        .bind(month_spent + grant)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("update accounts set reserved = reserved + $1 where id = $2")
            .bind(grant)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        fold_charges(&mut tx, account_id, self.instance).await?;
        let topped_up = match lease_id {
            Some(id) => {
                sqlx::query("update leases set amount = amount + $1 where id = $2")
                    .bind(grant)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1
            }
            None => false,
        };
        let id = match (topped_up, lease_id) {
            (true, Some(id)) => id,
            _ => {
                sqlx::query_scalar(
                    "insert into leases (instance_id, account_id, key_id, day, month, amount, created_at) \
                     values ($1, $2, $3, $4, $5, $6, $7) returning id",
                )
                .bind(self.instance)
                .bind(account_id)
                .bind(key_id)
                .bind(day)
                .bind(month)
                .bind(grant)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        // Durable (unlike a reservation's commit): the process serves many requests from a
        // slice, which must not vanish in a database crash while the process goes on.
        tx.commit().await?;
        Ok((id, grant))
    }

    /// After a usage batch: its leased holds leave the book; if it committed, their charges
    /// leave the slices (the batch lowered the rows' `amount` by them). Called before the
    /// batch's requests are answered.
    pub fn leases_settled(&self, batch: &[UsageEntry], committed: bool) {
        let Some(book) = &self.leases else { return };
        let mut leases = book.lock();
        for e in batch {
            let Some(r) = e
                .reservation
                .as_ref()
                .filter(|r| matches!(r.source, HoldSource::Lease(_)))
            else {
                continue;
            };
            if let Some(l) = leases.get_mut(&(r.key_id.0, r.day, r.month)) {
                l.in_flight -= r.amount.micros();
                if committed {
                    l.granted -= e.usage.cost.min(r.amount).micros();
                }
            }
        }
    }
}

/// In the usage batch's transaction, after the accounts: each lease's row down by what the
/// batch charged against it (`lease id -> charge`). Returns the leases that had no row
/// any more (`usage_batch::charge_orphans`).
pub(crate) async fn settle_leases(
    tx: &mut sqlx::PgConnection,
    charges: &HashMap<LeaseId, i64>,
) -> Result<Vec<LeaseId>> {
    if charges.is_empty() {
        return Ok(Vec::new());
    }
    let mut pairs: Vec<(LeaseId, i64)> = charges.iter().map(|(k, v)| (*k, *v)).collect();
    pairs.sort_unstable();
    let (ids, amounts): (Vec<LeaseId>, Vec<i64>) = pairs.into_iter().unzip();
    let found: Vec<(LeaseId,)> = sqlx::query_as(
        "update leases set amount = leases.amount - v.charge, charged = leases.charged + v.charge \
         from unnest($1::bigint[], $2::bigint[]) as v(id, charge) where leases.id = v.id \
         returning leases.id",
    )
    .bind(&ids)
    .bind(amounts)
    .fetch_all(&mut *tx)
    .await?;
    let found: Vec<LeaseId> = found.into_iter().map(|(id,)| id).collect();
    Ok(ids.into_iter().filter(|id| !found.contains(id)).collect())
}
