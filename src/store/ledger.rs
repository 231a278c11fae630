//! Reservations: how limits and balances hold under concurrency.
//!
//! Before a request is forwarded, [`PgStore::reserve`] holds its worst-case cost in one
//! transaction: conditional `UPDATE`s raise the key's day and month counters and the
//! account's `reserved` only if every limit still holds, and a `reservations` row records
//! the hold. The conditions are evaluated by the database against the latest committed row
//! (row locks and re-check under READ COMMITTED),
//! so concurrent requests cannot together pass a limit. Settlement to the real cost happens
//! in the usage batch (see `store::usage`), in the same transaction as the usage row.
//! Every transaction here and in the usage batch locks key rows before account rows
//! (deadlock freedom on PostgreSQL).
//! A hold whose request died with its process is released by [`PgStore::sweep_dead_instances`]
//! as soon as that process is gone, or by age in [`Store::sweep_reservations`].

use rand::distr::{Alphanumeric, SampleString};

use super::keys::KeyRow;
use super::{on_read, on_write, PgStore, Result, Store, StoreError};

/// id, account, key, amount, day, month of a hold to release.
type StaleHold = (String, WorkspaceId, KeyId, Credits, i64, i64);
use crate::domain::{time_util, Credits, KeyId, LeaseId, WorkspaceId};

/// A hold. Journaled as part of `usage_journal::EntryV1` (its own struct).
#[derive(Debug, Clone)]
pub struct Reservation {
    pub account_id: WorkspaceId,
    pub key_id: KeyId,
    pub amount: Credits,
    pub day: i64,
    pub month: i64,
    pub source: HoldSource,
}

/// Where a hold lives, which decides what its settlement changes. One enum rather than a
/// flag and an option, so a hold cannot claim a reservation row and a lease at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldSource {
    /// In the process's memory (SQLite, see `gateway::holds`): settlement only adds the
    /// charge to the key's counters and takes it from the balance.
    Memory,
    /// A row of `reservations` with this id (PostgreSQL without leases): settlement deletes
    /// it, releases the hold from the counters and `reserved`, and charges.
    Row(String),
    /// Served from this process's budget lease, the `leases` row with this id (PostgreSQL,
    /// `store::lease_book`). Settlement charges the lease row alone; the key's counters
    /// already count the hold as part of the slice.
    Lease(LeaseId),
}

impl Reservation {
    /// A hold of `amount` on `key` for the UTC day and month it was taken in, kept in this
    /// process's memory; a reservation row or a lease is set on top (`..Reservation::held`).
    pub fn held(key: &KeyRow, amount: Credits, day: i64, month: i64) -> Reservation {
        Reservation {
            account_id: key.account_id,
            key_id: key.id,
            amount,
            day,
            month,
            source: HoldSource::Memory,
        }
    }

    /// Whether the hold lives in the process's memory (the hold book's to count).
    pub fn in_memory(&self) -> bool {
        self.source == HoldSource::Memory
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("daily limit reached")]
    DailyLimit,
    #[error("monthly limit reached")]
    MonthlyLimit,
    #[error("insufficient credits")]
    InsufficientCredits,
    /// The key was revoked or disabled between authentication and reservation.
    #[error("key no longer active")]
    KeyInactive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ReserveError {
    fn from(e: sqlx::Error) -> Self {
        ReserveError::Store(StoreError::Db(e))
    }
}

/// Day and month counters read as zero once their bucket has passed.
const RESERVE_KEY: &str = "update api_keys set \
    day_spend = (case when spend_day = $1 then day_spend else 0 end) + $3, spend_day = $1, \
    month_spend = (case when spend_month = $2 then month_spend else 0 end) + $3, spend_month = $2 \
    where id = $4 and status = 'active' \
    and (daily_limit is null or (case when spend_day = $1 then day_spend else 0 end) + $3 <= daily_limit) \
    and (monthly_limit is null or (case when spend_month = $2 then month_spend else 0 end) + $3 <= monthly_limit)";

/// The account must keep a positive spendable amount; a free request still needs one.
const RESERVE_ACCOUNT: &str = "update accounts set reserved = reserved + $1 \
    where id = $2 and balance - reserved >= $1 and balance - reserved > 0";

const INSERT_RESERVATION: &str =
    "insert into reservations (id, account_id, key_id, amount, day, month, created_at, instance_id) \
    values ($1, $2, $3, $4, $5, $6, $7, $8)";

/// First half of the advisory-lock key of a process's liveness lock ("LR").
pub(crate) const LIVENESS_LOCK_CLASS: i32 = 0x4c52;

/// Moves `$2` (charge) from reserved into spent, releases `$1` (the hold), and records `$4`
/// as the last batch that settled this account (SQLite's hold book reads it; 0 leaves it).
pub(crate) const SETTLE_ACCOUNT: &str = "update accounts set \
    balance = case when balance < $2 then 0 else balance - $2 end, \
    reserved = case when reserved < $1 then 0 else reserved - $1 end, \
    settled_seq = case when settled_seq < $4 then $4 else settled_seq end \
    where id = $3";

/// Replaces held amounts by charged ones in the counters of the bucket they were held in,
/// and advances `last_used_at` (folded in here so usage costs no extra write per request).
pub(crate) const SETTLE_KEY: &str = "update api_keys set \
    day_spend = case when spend_day = $1 then (case when day_spend + $3 < $2 then 0 else day_spend + $3 - $2 end) else day_spend end, \
    month_spend = case when spend_month = $4 then (case when month_spend + $3 < $2 then 0 else month_spend + $3 - $2 end) else month_spend end, \
    last_used_at = case when last_used_at is null or last_used_at < $5 then nullif($5, 0) else last_used_at end \
    where id = $6";

/// Settlement of an in-memory hold: adds the charge to the bucket it belongs to (a late
/// charge for an earlier day never resets a newer day's counter) and advances `last_used_at`.
pub(crate) const CHARGE_KEY: &str = "update api_keys set \
    day_spend = case when spend_day = $1 then day_spend + $2 when spend_day < $1 then $2 else day_spend end, \
    spend_day = case when spend_day < $1 then $1 else spend_day end, \
    month_spend = case when spend_month = $3 then month_spend + $2 when spend_month < $3 then $2 else month_spend end, \
    spend_month = case when spend_month < $3 then $3 else spend_month end, \
    last_used_at = case when last_used_at is null or last_used_at < $4 then nullif($4, 0) else last_used_at end \
    where id = $5";

/// Advances a secret's last use (`key_secrets`), in the usage batch's transaction, after the
/// key and account rows (the lock order of every transaction: keys, accounts, leases,
/// secrets; a roll locks its key row before its secrets).
pub(crate) const SETTLE_SECRET: &str = "update key_secrets set \
    last_client = case when last_used_at is null or last_used_at <= $1 then $3 else last_client end, \
    last_used_at = case when last_used_at is null or last_used_at < $1 then $1 else last_used_at end \
    where id = $2";

impl PgStore {
    /// Holds `amount` against the key's limits and the account's balance, atomically: from
    /// this process's budget lease when it has one (`store::lease_book`), else with a
    /// reservation row. (SQLite holds in memory instead: `gateway::holds`.)
    pub async fn reserve(
        &self,
        key: &KeyRow,
        amount: Credits,
        now_ms: i64,
    ) -> Result<Reservation, ReserveError> {
        if let Some(book) = &self.leases {
            return self.reserve_leased(book, key, amount, now_ms).await;
        }
        let day = time_util::day_number(now_ms);
        let month = time_util::month_number(now_ms);
        let id = Alphanumeric.sample_string(&mut rand::rng(), 24);
        let mut tx = self.pool.begin().await?;
        // A hold needs atomicity and isolation, not durability: the key and account rows stay
        // locked only for the statements, not for a WAL flush, so requests of one key do not
        // queue behind each other's fsync. A hold lost in a server crash is harmless: its
        // settlement (a durable commit, which also flushes every earlier commit) finds no row
        // and charges without releasing.
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let key_ok = sqlx::query(RESERVE_KEY)
            .bind(day)
            .bind(month)
            .bind(amount.micros())
            .bind(key.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !key_ok {
            tx.rollback().await?;
            return Err(self
                .store
                .why_key_refused(key.account_id, key.id, amount, now_ms)
                .await);
        }
        let account_ok = sqlx::query(RESERVE_ACCOUNT)
            .bind(amount.micros())
            .bind(key.account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !account_ok {
            tx.rollback().await?;
            return Err(ReserveError::InsufficientCredits);
        }
        sqlx::query(INSERT_RESERVATION)
            .bind(&id)
            .bind(key.account_id)
            .bind(key.id)
            .bind(amount.micros())
            .bind(day)
            .bind(month)
            .bind(now_ms)
            .bind(self.instance)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Reservation {
            source: HoldSource::Row(id),
            ..Reservation::held(key, amount, day, month)
        })
    }

    /// Releases at once every hold of a process that is gone, which is when its liveness
    /// lock (a session advisory lock, dropped by PostgreSQL when the session ends) can be
    /// taken. Holds of live processes are untouched.
    pub async fn sweep_dead_instances(&self) -> Result<u64> {
        let pool = &self.pool;
        let owners: Vec<i64> = sqlx::query_scalar(
            "select instance_id from reservations where instance_id <> $1 \
             union select instance_id from leases where instance_id <> $1 \
             union select instance_id from key_in_flight where instance_id <> $1",
        )
        .bind(self.instance)
        .fetch_all(pool)
        .await?;
        let mut released = 0;
        for owner in owners {
            let mut conn = pool.acquire().await?;
            let dead: bool = sqlx::query_scalar("select pg_try_advisory_lock($1, $2::int4)")
                .bind(LIVENESS_LOCK_CLASS)
                .bind(owner)
                .fetch_one(&mut *conn)
                .await?;
            if dead {
                let holds: Vec<StaleHold> = sqlx::query_as(
                    "select id, account_id, key_id, amount, day, month from reservations where instance_id = $1",
                )
                .bind(owner)
                .fetch_all(&mut *conn)
                .await?;
                released += self.store.release_holds(holds).await?;
                released += self.release_leases_of(owner).await?;
                self.drop_in_flight_of(owner).await?;
                sqlx::query("select pg_advisory_unlock($1, $2::int4)")
                    .bind(LIVENESS_LOCK_CLASS)
                    .bind(owner)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(released)
    }
}

impl Store {
    /// After the key update matched no row: read the key again to say which rule refused.
    async fn why_key_refused(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        amount: Credits,
        now_ms: i64,
    ) -> ReserveError {
        let key = match self.key(account_id, key_id).await {
            Ok(k) => k,
            Err(e) => return e.into(),
        };
        if key.status != super::keys::KeyStatus::Active {
            return ReserveError::KeyInactive;
        }
        let over = |limit: Option<Credits>, spent: Credits| {
            limit.is_some_and(|l| spent.micros() + amount.micros() > l.micros())
        };
        if over(key.daily_limit, key.spent_today(now_ms)) {
            ReserveError::DailyLimit
        } else if over(key.monthly_limit, key.spent_this_month(now_ms)) {
            ReserveError::MonthlyLimit
        } else {
            // Raced with a settlement that freed room; report the daily limit conservatively.
            ReserveError::DailyLimit
        }
    }

    /// Releases holds created before `cutoff_ms` whose requests can no longer be running
    /// (their process died). Returns how many were released.
    pub async fn sweep_reservations(&self, cutoff_ms: i64) -> Result<u64> {
        let stale: Vec<StaleHold> = on_read!(self, pool => {
            sqlx::query_as("select id, account_id, key_id, amount, day, month from reservations where created_at < $1")
                .bind(cutoff_ms)
                .fetch_all(pool)
                .await?
        });
        self.release_holds(stale).await
    }

    async fn release_holds(&self, holds: Vec<StaleHold>) -> Result<u64> {
        let mut released = 0;
        for (id, account_id, key_id, amount, day, month) in holds {
            on_write!(self, pool => {
                let mut tx = pool.begin().await?;
                let gone = sqlx::query("delete from reservations where id = $1").bind(&id).execute(&mut *tx).await?.rows_affected();
                if gone == 1 {
                    sqlx::query(SETTLE_KEY)
                        .bind(day).bind(amount).bind(0i64).bind(month).bind(0i64).bind(key_id)
                        .execute(&mut *tx).await?;
                    sqlx::query(SETTLE_ACCOUNT).bind(amount).bind(0i64).bind(account_id).bind(0i64).execute(&mut *tx).await?;
                    released += 1;
                }
                tx.commit().await?;
            });
        }
        Ok(released)
    }
}
