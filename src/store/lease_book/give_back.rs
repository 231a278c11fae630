//! Giving slices back: the unused part of this process's leases (idle, a passed day or
//! month, before a read of the account), and every lease of a process that is gone.

use std::time::Instant;

use super::book::{Detached, LeaseBook, IDLE_RETURN};
use super::fold_charges;
use crate::domain::time_util;
use crate::store::ledger::SETTLE_ACCOUNT;
use crate::store::{PgStore, Result};

/// Key counters down by `$2` in the bucket `$1` (day) / `$3` (month) only: a slice of a day
/// that has passed is no longer counted.
const RELEASE_KEY: &str = "update api_keys set \
    day_spend = case when spend_day = $1 then (case when day_spend < $2 then 0 else day_spend - $2 end) else day_spend end, \
    month_spend = case when spend_month = $3 then (case when month_spend < $2 then 0 else month_spend - $2 end) else month_spend end \
    where id = $4";

impl PgStore {
    /// Gives back the unused part of every lease idle for [`IDLE_RETURN`] or of a passed
    /// day or month. Returns the amount given back.
    pub async fn return_idle_leases(&self) -> i64 {
        let Some(book) = &self.leases else { return 0 };
        let now = Instant::now();
        let day = time_util::day_number(time_util::now_ms());
        let month = time_util::month_number(time_util::now_ms());
        let parts = book.detach(|(_, d, m), l| {
            *d != day || *m != month || now.duration_since(l.used_at) >= IDLE_RETURN
        });
        self.give_back(book, parts).await
    }

    /// Starts the task that gives idle slices back, every half [`IDLE_RETURN`] (PostgreSQL
    /// with leases; nothing otherwise).
    pub fn spawn_lease_returns(&self) {
        if self.leases.is_none() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(IDLE_RETURN / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                store.return_idle_leases().await;
            }
        });
    }

    /// Gives back the unused part of this process's leases on an account's keys, so a read
    /// of its balance shows no slice of this process as reserved. Whether anything went back.
    pub async fn return_account_leases(&self, account_id: i64) -> bool {
        let Some(book) = &self.leases else {
            return false;
        };
        if book.unused(account_id) == 0 {
            return false;
        }
        let parts = book.detach(|_, l| l.account_id == account_id);
        self.give_back(book, parts).await > 0
    }

    async fn give_back(&self, book: &LeaseBook, parts: Vec<Detached>) -> i64 {
        let mut total = 0;
        for d in parts {
            match self.release_lease_part(&d).await {
                Ok(()) => total += d.amount,
                Err(e) => {
                    tracing::warn!(error = %e, "returning an unused lease failed");
                    book.reattach(&d);
                }
            }
        }
        total
    }

    /// Key counters, account's `reserved` and the lease row down by the part; the row goes
    /// once nothing is left in it. A lease whose row is gone was released by another
    /// process's liveness sweep (this process had lost its liveness lock): its slice is no
    /// longer counted anywhere, so nothing is given back twice.
    async fn release_lease_part(&self, d: &Detached) -> Result<()> {
        let pool = &self.pool;
        let (key_id, day, month) = d.bucket;
        let mut tx = pool.begin().await?;
        release_in_tx(&mut tx, key_id, day, month, d.account_id, d.amount).await?;
        fold_charges(&mut tx, d.account_id, self.instance).await?;
        // Checked after the key and account rows are locked (the lock order), so a sweep
        // cannot delete the row between this check and the release above.
        let still: Option<i64> =
            sqlx::query_scalar("update leases set amount = amount - $1 where id = $2 returning id")
                .bind(d.amount)
                .bind(d.id)
                .fetch_optional(&mut *tx)
                .await?;
        if still.is_none() {
            tracing::warn!(
                lease = d.id,
                "a lease of this process was released by another process; not given back twice"
            );
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::query("delete from leases where id = $1 and amount <= 0 and charged = 0")
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The liveness sweep: releases every lease of a process that is gone. Returns how many.
    pub(crate) async fn release_leases_of(&self, owner: i64) -> Result<u64> {
        let pool = &self.pool;
        let ids: Vec<i64> = sqlx::query_scalar("select id from leases where instance_id = $1")
            .bind(owner)
            .fetch_all(pool)
            .await?;
        let mut released = 0;
        for id in ids {
            let mut tx = pool.begin().await?;
            // Key, account, then lease row: the lease row's content is read (and locked)
            // last, like every other transaction here.
            let row: Option<(i64, i64, i64, i64)> =
                sqlx::query_as("select account_id, key_id, day, month from leases where id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((account_id, key_id, day, month)) = row else {
                tx.rollback().await?;
                continue;
            };
            sqlx::query("select 1 from api_keys where id = $1 for update")
                .bind(key_id)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query("select 1 from accounts where id = $1 for update")
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?;
            fold_charges(&mut tx, account_id, owner).await?;
            let amount: Option<i64> =
                sqlx::query_scalar("delete from leases where id = $1 returning amount")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(amount) = amount.filter(|a| *a > 0) {
                release_in_tx(&mut tx, key_id, day, month, account_id, amount).await?;
            }
            tx.commit().await?;
            released += 1;
        }
        Ok(released)
    }
}

/// A slice's part no longer counted: key counters (its bucket only) and account `reserved`.
async fn release_in_tx(
    tx: &mut sqlx::PgConnection,
    key_id: i64,
    day: i64,
    month: i64,
    account_id: i64,
    amount: i64,
) -> Result<()> {
    sqlx::query(RELEASE_KEY)
        .bind(day)
        .bind(amount)
        .bind(month)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(SETTLE_ACCOUNT)
        .bind(amount)
        .bind(0i64)
        .bind(account_id)
        .bind(0i64)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
