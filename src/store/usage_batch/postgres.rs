//! The PostgreSQL executor of a batch plan.

use sqlx::QueryBuilder;

use super::{
    add_on_conflict, daily_cells, daily_keys_cells, insert_into, one_statement, push_cells, sorted,
    usage_cells, workspace_cells, BatchPlan, LastUseWrites, Rows, CHUNK, DAILY_DIMENSIONS,
    DAILY_KEYS_DIMENSIONS, INSERT_USAGE_COLUMNS, ROLLUP_COUNTERS, WORKSPACE_DIMENSIONS,
};
use crate::domain::LeaseId;
use crate::store::ledger::HoldSource;
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
    let orphans = if rows == Rows::Write && one_statement::fits(&plan) {
        one_statement::write(pool, batch, &plan).await?
    } else {
        write_transaction(pool, batch, rows, &mut plan).await?
    };
    if !orphans.is_empty() {
        // The batch is committed: its requests are answered either way.
        if let Err(e) = charge_orphans(pool, batch, &orphans).await {
            tracing::error!(error = %e, leases = ?orphans, "charges of released leases not applied");
        }
    }
    if let Some(written) = last_use {
        written.written(&plan);
    }
    Ok(())
}

/// A batch that [`one_statement`] cannot take, as a transaction of several statements.
/// Returns the leases whose rows were gone ([`charge_orphans`]).
/// Long on purpose: the statements in lock order (keys, accounts, leases, secrets), as one
/// reads them in `one_statement`'s SQL.
async fn write_transaction(
    pool: &sqlx::PgPool,
    batch: &[UsageEntry],
    rows: Rows,
    plan: &mut BatchPlan<'_>,
) -> Result<Vec<LeaseId>> {
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
    charge_keys_and_settle_accounts(&mut tx, plan).await?;
    let orphans = crate::store::lease_book::settle_leases(&mut tx, &plan.leases).await?;
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
    for chunk in sorted(&plan.workspace).chunks(CHUNK) {
        let mut q = QueryBuilder::new(insert_into(
            "usage_daily_workspace",
            &rollup_columns(&WORKSPACE_DIMENSIONS),
        ));
        q.push_values(chunk, |mut b, (k, n)| {
            push_cells(&mut b, &workspace_cells(k, n))
        });
        q.push(add_on_conflict(
            "usage_daily_workspace",
            &WORKSPACE_DIMENSIONS,
        ));
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(orphans)
}

/// In-memory holds' charges into their buckets' key counters (`plan.charges`), then each
/// account's release and charge (`plan.accounts`): keys before accounts, the lock order.
async fn charge_keys_and_settle_accounts(
    tx: &mut sqlx::PgConnection,
    plan: &BatchPlan<'_>,
) -> Result<()> {
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
    Ok(())
}

/// Charges of leased holds whose lease row was gone when their batch ran: released by another
/// process's liveness sweep while this process still served from it (say its liveness
/// connection had dropped). That release gave the slice's whole remaining amount back to
/// the key's counters and the account's `reserved`, this hold included, so the holds are
/// settled as in-memory holds are: the charge added to the key's counters and taken from
/// the balance, in a transaction of its own after the batch's (whose lock order put the
/// lease rows last). A delivered answer is paid for even then.
async fn charge_orphans(
    pool: &sqlx::PgPool,
    batch: &[UsageEntry],
    orphans: &[LeaseId],
) -> Result<()> {
    tracing::warn!(leases = ?orphans, "usage charged against leases that were released; charging the accounts directly");
    let entries: Vec<UsageEntry> = batch
        .iter()
        .filter(|e| {
            e.reservation
                .as_ref()
                .is_some_and(|r| matches!(r.source, HoldSource::Lease(l) if orphans.contains(&l)))
        })
        .cloned()
        .map(|mut e| {
            if let Some(r) = &mut e.reservation {
                r.source = HoldSource::Memory;
            }
            e
        })
        .collect();
    let plan = BatchPlan::new(&entries, Rows::Skip, 0);
    let mut tx = pool.begin().await?;
    charge_keys_and_settle_accounts(&mut tx, &plan).await?;
    tx.commit().await?;
    Ok(())
}
