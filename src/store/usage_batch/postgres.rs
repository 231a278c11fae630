//! The PostgreSQL executor of a batch plan.

use sqlx::QueryBuilder;

use super::{
    add_on_conflict, daily_cells, daily_keys_cells, insert_into, one_statement, push_cells, sorted,
    usage_cells, BatchPlan, LastUseWrites, Rows, CHUNK, DAILY_DIMENSIONS, DAILY_KEYS_DIMENSIONS,
    INSERT_USAGE_COLUMNS, ROLLUP_COUNTERS,
};
use crate::store::ledger::{CHARGE_KEY, SETTLE_ACCOUNT, SETTLE_KEY, SETTLE_SECRET};
use crate::store::usage::UsageEntry;
use crate::store::Result;

/// The PostgreSQL executor: multi-row statements, few round trips. Batches are not numbered
/// (no hold book: holds are rows), so `settled_seq` stays 0. With `last_use`, last uses
/// are written only when due (see [`LastUseWrites`]).
pub(super) async fn write_postgres(
    pool: &sqlx::PgPool,
    batch: &[UsageEntry],
    (rows, shard): (Rows, i64),
    last_use: Option<&mut LastUseWrites>,
) -> Result<()> {
    let mut plan = BatchPlan::new(batch, rows, shard);
    if let Some(written) = last_use.as_deref() {
        written.prune(&mut plan);
    }
    if rows == Rows::Write && one_statement::fits(&plan) {
        let orphans = one_statement::write(pool, batch, &plan).await?;
        if !orphans.is_empty() {
            let mut tx = pool.begin().await?;
            charge_orphans(&mut tx, batch, &orphans).await?;
            tx.commit().await?;
        }
    } else {
        write_transaction(pool, batch, rows, &mut plan).await?;
    }
    if let Some(written) = last_use {
        written.written(&plan);
    }
    Ok(())
}

/// A batch that [`one_statement`] cannot take, as a transaction of several statements.
/// Long on purpose: the statements in lock order (keys, accounts, leases, secrets), as one
/// reads them in `one_statement`'s SQL.
async fn write_transaction(
    pool: &sqlx::PgPool,
    batch: &[UsageEntry],
    rows: Rows,
    plan: &mut BatchPlan<'_>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let written = if rows == Rows::Write { batch } else { &[] };
    for chunk in written.chunks(CHUNK) {
        let mut q = QueryBuilder::new(insert_into("usage", &INSERT_USAGE_COLUMNS));
        q.push_values(chunk, |mut b, e| push_cells(&mut b, &usage_cells(&e.usage)));
        q.build().execute(&mut *tx).await?;
    }
    // Holds already released by the sweeper must not be released twice.
    let mut live: Vec<String> = Vec::new();
    for chunk in plan.reservation_ids.chunks(CHUNK) {
        let mut q = QueryBuilder::new("delete from reservations where id in (");
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(") returning id");
        let ids: Vec<(String,)> = q.build_query_as().fetch_all(&mut *tx).await?;
        live.extend(ids.into_iter().map(|(id,)| id));
    }
    if live.len() != plan.reservation_ids.len() {
        plan.unrelease_swept(batch, &live);
    }
    for ((key_id, day, month), d) in sorted(&plan.keys) {
        sqlx::query(SETTLE_KEY)
            .bind(day)
            .bind(d.release)
            .bind(d.charge)
            .bind(month)
            .bind(d.last_used)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
    }
    for ((key_id, day, month), c) in sorted(&plan.charges) {
        sqlx::query(CHARGE_KEY)
            .bind(day)
            .bind(c.charge)
            .bind(month)
            .bind(c.last_used)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
    }
    for (account_id, (release, charge)) in sorted(&plan.accounts) {
        sqlx::query(SETTLE_ACCOUNT)
            .bind(release)
            .bind(charge)
            .bind(account_id)
            .bind(0i64)
            .execute(&mut *tx)
            .await?;
    }
    let orphans = crate::store::lease_book::settle_leases(&mut tx, &plan.leases).await?;
    if !orphans.is_empty() {
        charge_orphans(&mut tx, batch, &orphans).await?;
    }
    for (secret_id, (last_used, client)) in sorted(&plan.secrets) {
        sqlx::query(SETTLE_SECRET)
            .bind(last_used)
            .bind(secret_id)
            .bind(client)
            .execute(&mut *tx)
            .await?;
    }
    let rollup_columns = |dims: &[&'static str]| -> Vec<&'static str> {
        dims.iter().chain(ROLLUP_COUNTERS.iter()).copied().collect()
    };
    for chunk in sorted(&plan.daily).chunks(CHUNK) {
        let mut q = QueryBuilder::new(insert_into(
            "usage_daily",
            &rollup_columns(&DAILY_DIMENSIONS),
        ));
        q.push_values(chunk, |mut b, (k, n)| {
            push_cells(&mut b, &daily_cells(k, n))
        });
        q.push(add_on_conflict("usage_daily", &DAILY_DIMENSIONS));
        q.build().execute(&mut *tx).await?;
    }
    for chunk in sorted(&plan.daily_keys).chunks(CHUNK) {
        let mut q = QueryBuilder::new(insert_into(
            "usage_daily_keys",
            &rollup_columns(&DAILY_KEYS_DIMENSIONS),
        ));
        q.push_values(chunk, |mut b, (k, n)| {
            push_cells(&mut b, &daily_keys_cells(k, n))
        });
        q.push(add_on_conflict("usage_daily_keys", &DAILY_KEYS_DIMENSIONS));
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Charges of leased holds whose lease row was gone when their batch ran: released by another
/// process's liveness sweep while this process still served from it (say its liveness
/// connection had dropped). That release gave the slice's whole remaining amount back to
/// the key's counters and the account's `reserved`, this hold included, so the charge is
/// added to the key's counters and taken from the balance directly, as an in-memory hold's
/// is: a delivered answer is paid for even then. Keys, then accounts (the lock order).
async fn charge_orphans(
    tx: &mut sqlx::PgConnection,
    batch: &[UsageEntry],
    orphans: &[i64],
) -> Result<()> {
    tracing::warn!(leases = ?orphans, "usage charged against leases that were released; charging the accounts directly");
    let mut keys: std::collections::BTreeMap<(i64, i64, i64), (i64, i64)> = Default::default();
    let mut accounts: std::collections::BTreeMap<i64, i64> = Default::default();
    for e in batch {
        let Some(r) = &e.reservation else { continue };
        if !r.lease.is_some_and(|l| orphans.contains(&l)) {
            continue;
        }
        let charge = e.usage.cost.min(r.amount.micros());
        let k = keys.entry((r.key_id, r.day, r.month)).or_default();
        k.0 += charge;
        k.1 = k.1.max(e.usage.completed_at);
        *accounts.entry(r.account_id).or_default() += charge;
    }
    for ((key_id, day, month), (charge, last_used)) in keys {
        sqlx::query(CHARGE_KEY)
            .bind(day)
            .bind(charge)
            .bind(month)
            .bind(last_used)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
    }
    for (account_id, charge) in accounts {
        sqlx::query(SETTLE_ACCOUNT)
            .bind(0i64)
            .bind(charge)
            .bind(account_id)
            .bind(0i64)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
