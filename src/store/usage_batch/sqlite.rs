//! The SQLite executor of a batch plan, through rusqlite on the calling thread.

use std::sync::LazyLock;

use rusqlite::{Connection, ToSql, TransactionBehavior};

use super::{
    add_on_conflict, daily_cells, daily_keys_cells, insert_into, one_row, sorted, usage_cells,
    workspace_cells, BatchPlan, Rows, DAILY_DIMENSIONS, DAILY_KEYS_DIMENSIONS,
    INSERT_USAGE_COLUMNS, ROLLUP_COUNTERS, WORKSPACE_DIMENSIONS,
};
use crate::store::ledger::{CHARGE_KEY, SETTLE_ACCOUNT, SETTLE_KEY, SETTLE_SECRET};
use crate::store::usage::UsageEntry;

/// Single-row statements for the SQLite executor, built once.
pub(super) struct SqliteSql {
    pub usage: String,
    pub daily: String,
    pub daily_keys: String,
    pub workspace: String,
}

pub(super) static SQLITE_SQL: LazyLock<SqliteSql> = LazyLock::new(|| {
    let rollup = |table: &str, dims: &[&str]| {
        let columns: Vec<&str> = dims.iter().chain(ROLLUP_COUNTERS.iter()).copied().collect();
        format!(
            "{}{}{}",
            insert_into(table, &columns),
            one_row(columns.len()),
            add_on_conflict(table, dims)
        )
    };
    SqliteSql {
        usage: format!(
            "{}{}",
            insert_into("usage", &INSERT_USAGE_COLUMNS),
            one_row(INSERT_USAGE_COLUMNS.len())
        ),
        daily: rollup("usage_daily", &DAILY_DIMENSIONS),
        daily_keys: rollup("usage_daily_keys", &DAILY_KEYS_DIMENSIONS),
        workspace: rollup("usage_daily_workspace", &WORKSPACE_DIMENSIONS),
    }
});

/// The SQLite executor: single-row prepared statements (SQLite has no round trips, so
/// cached single-row statements beat building a multi-row one per batch).
pub(super) fn write_sqlite(
    c: &mut Connection,
    batch: &[UsageEntry],
    seq: i64,
    rows: Rows,
) -> rusqlite::Result<()> {
    let mut plan = BatchPlan::new(batch, rows, 0);
    let sql = &*SQLITE_SQL;
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if rows == Rows::Write {
        let mut insert = tx.prepare_cached(&sql.usage)?;
        for e in batch {
            let u = &e.usage;
            execute_numbered(&mut insert, &usage_cells(u))?;
        }
    }
    if !plan.reservation_ids.is_empty() {
        let mut delete = tx.prepare_cached("delete from reservations where id = $1")?;
        let mut live = Vec::new();
        for id in &plan.reservation_ids {
            if execute_numbered(&mut delete, &[id])? == 1 {
                live.push((*id).to_owned());
            }
        }
        drop(delete);
        if live.len() != plan.reservation_ids.len() {
            plan.unrelease_swept(batch, &live);
        }
    }
    for ((key_id, day, month), d) in sorted(&plan.keys) {
        let mut s = tx.prepare_cached(SETTLE_KEY)?;
        execute_numbered(
            &mut s,
            &[day, &d.release, &d.charge, month, &d.last_used, key_id],
        )?;
    }
    for ((key_id, day, month), c) in sorted(&plan.charges) {
        let mut s = tx.prepare_cached(CHARGE_KEY)?;
        execute_numbered(&mut s, &[day, &c.charge, month, &c.last_used, key_id])?;
    }
    for (account_id, (release, charge)) in sorted(&plan.accounts) {
        let mut s = tx.prepare_cached(SETTLE_ACCOUNT)?;
        execute_numbered(&mut s, &[release, charge, account_id, &seq])?;
    }
    for (secret_id, (last_used, client)) in sorted(&plan.secrets) {
        let mut s = tx.prepare_cached(SETTLE_SECRET)?;
        use super::Cell::{Int, MaybeText};
        execute_numbered(
            &mut s,
            &[Int(*last_used), Int(*secret_id), MaybeText(*client)],
        )?;
    }
    {
        let mut daily = tx.prepare_cached(&sql.daily)?;
        for (k, n) in sorted(&plan.daily) {
            execute_numbered(&mut daily, &daily_cells(k, n))?;
        }
        let mut daily_keys = tx.prepare_cached(&sql.daily_keys)?;
        for (k, n) in sorted(&plan.daily_keys) {
            execute_numbered(&mut daily_keys, &daily_keys_cells(k, n))?;
        }
        let mut workspace = tx.prepare_cached(&sql.workspace)?;
        for (k, n) in sorted(&plan.workspace) {
            execute_numbered(&mut workspace, &workspace_cells(k, n))?;
        }
    }
    tx.commit()
}

/// Runs a statement written with `$1…$n` placeholders (the text shared with sqlx), binding
/// `values[i]` to `$i+1`. SQLite numbers `$n` parameters in order of first appearance, not
/// by their digits: where they appear in order (the inserts) the index is the number, read
/// in O(1); elsewhere it is looked up by name.
fn execute_numbered<V: ToSql>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    values: &[V],
) -> rusqlite::Result<usize> {
    const NAMES: [&str; 20] = [
        "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14",
        "$15", "$16", "$17", "$18", "$19", "$20",
    ];
    if values.len() > NAMES.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            values.len(),
            NAMES.len(),
        ));
    }
    for (i, (v, name)) in values.iter().zip(NAMES).enumerate() {
        let index = if stmt.parameter_name(i + 1) == Some(name) {
            i + 1
        } else {
            stmt.parameter_index(name)?
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.into()))?
        };
        stmt.raw_bind_parameter(index, v)?;
    }
    stmt.raw_execute()
}
