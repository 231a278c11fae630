//! The usage write path: one transaction per batch of usage rows (group commit) that inserts
//! the rows, settles their holds, advances `last_used_at` and adds to both daily rollups. On
//! SQLite each batch also has a number, stored as `settled_seq` on the accounts it settles
//! (see `gateway::holds`).
//!
//! A batch is first summed into a [`BatchPlan`] (plain Rust, no I/O): settlements per key and
//! account, rollup rows per dimension, so a batch of hundreds of requests costs a handful of
//! statements, not several per request. Two executors apply a plan:
//!
//! - **PostgreSQL**, through sqlx: multi-row statements, few round trips.
//! - **SQLite**, through rusqlite on the calling thread ([`SqliteStore::apply_usage_blocking`]):
//!   the gateway's usage applier runs it on a thread of its own, for journaled entries
//!   (see `usage_journal`). Through sqlx every statement
//!   of the batch was a hop to sqlx's connection thread and back (eight per batch); those
//!   wake-ups cost more than the SQLite work itself. The transaction is `BEGIN IMMEDIATE`:
//!   this connection competes with sqlx's writer for SQLite's write lock, and taking it up
//!   front means the busy timeout applies instead of a snapshot conflict.

use std::collections::HashMap;

use super::ledger::HoldSource;
use super::usage::{NewUsage, UsageEntry, UsageStatus};
use super::{sqlite_direct, usage_journal, Engine, PgStore, Result, SqliteStore, Store};
use crate::domain::{time_util, ErrorCode, LeaseId};

mod last_use;
mod one_statement;
mod postgres;
mod rollup_rows;
mod sqlite;

pub use last_use::LastUseWrites;
use rollup_rows::{
    daily_cells, daily_keys_cells, workspace_cells, DailyKey, DailyKeysKey, WorkspaceKey,
    DAILY_DIMENSIONS, DAILY_KEYS_DIMENSIONS, ROLLUP_COUNTERS, WORKSPACE_DIMENSIONS,
};

use postgres::write_postgres;
use sqlite::write_sqlite;

/// Rows in one multi-row statement (PostgreSQL): well under its bind-parameter limit.
const CHUNK: usize = 500;

const INSERT_USAGE_COLUMNS: [&str; 20] = [
    "generation_id",
    "account_id",
    "key_id",
    "key_name",
    "requested_model",
    "resolved_model",
    "provider",
    "region",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "status",
    "http_status",
    "error_code",
    "streamed",
    "latency_ms",
    "started_at",
    "completed_at",
    "secret_last4",
];

/// `insert into <table> (<columns>) ` (values follow).
fn insert_into(table: &str, columns: &[&str]) -> String {
    format!("insert into {table} ({}) ", columns.join(", "))
}

/// ` on conflict (<key>) do update set`, adding the batch's counters to the stored ones.
fn add_on_conflict(table: &str, key: &[&str]) -> String {
    let sums: Vec<String> = ROLLUP_COUNTERS
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect();
    format!(
        " on conflict ({}) do update set {}",
        key.join(", "),
        sums.join(", ")
    )
}

/// `values ($1, …, $n)`.
fn one_row(n: usize) -> String {
    let ps: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!("values ({})", ps.join(", "))
}

/// One bound value of a batch statement: both executors bind the same rows from the same
/// lists ([`usage_cells`], [`daily_cells`], [`daily_keys_cells`]), in the order of the
/// column lists above, so no bind list is written twice.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Int(i64),
    Text(&'a str),
    MaybeText(Option<&'a str>),
}

impl rusqlite::ToSql for Cell<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Cell::Int(i) => i.to_sql(),
            Cell::Text(t) => t.to_sql(),
            Cell::MaybeText(t) => t.to_sql(),
        }
    }
}

/// Binds `cells` in order (PostgreSQL's multi-row statements).
fn push_cells<'q>(
    b: &mut sqlx::query_builder::Separated<'_, 'q, sqlx::Postgres, &'static str>,
    cells: &[Cell<'q>],
) {
    for c in cells {
        match *c {
            Cell::Int(i) => b.push_bind(i),
            Cell::Text(t) => b.push_bind(t),
            Cell::MaybeText(t) => b.push_bind(t),
        };
    }
}

/// A usage row, in the order of [`INSERT_USAGE_COLUMNS`].
fn usage_cells(u: &NewUsage) -> [Cell<'_>; INSERT_USAGE_COLUMNS.len()] {
    use Cell::{Int, MaybeText, Text};
    [
        Text(&u.generation_id),
        Int(u.account_id.0),
        Int(u.key_id.0),
        Text(&u.key_name),
        Text(&u.requested_model),
        MaybeText(u.resolved_model.as_deref()),
        MaybeText(u.provider.as_deref()),
        MaybeText(u.region.as_deref()),
        Int(u.prompt_tokens),
        Int(u.completion_tokens),
        Int(u.prompt_tokens + u.completion_tokens),
        Int(u.cost.micros()),
        Text(u.status.as_str()),
        Int(i64::from(u.http_status)),
        MaybeText(u.error_code.map(ErrorCode::as_str)),
        Int(i64::from(u.streamed)),
        Int(u.latency_ms),
        Int(u.started_at),
        Int(u.completed_at),
        MaybeText(u.secret_last4.as_deref()),
    ]
}

/// A key's settlement in one (key, day, month) bucket: a hold is settled in the bucket it
/// was taken in.
#[derive(Debug, Default, Clone, Copy)]
struct KeyDelta {
    release: i64,
    charge: i64,
    last_used: i64,
}

/// Everything one batch changes, summed; sorted where PostgreSQL takes row locks, so that
/// concurrent transactions lock in one order (keys, then accounts, each by id, as in
/// `Store::reserve`) and can never deadlock.
struct BatchPlan<'a> {
    /// account -> (release, charge)
    accounts: HashMap<i64, (i64, i64)>,
    /// Holds in `reservations` (PostgreSQL): release and charge.
    keys: HashMap<(i64, i64, i64), KeyDelta>,
    /// In-memory holds (SQLite): only the charge reaches the database.
    charges: HashMap<(i64, i64, i64), KeyDelta>,
    daily: HashMap<DailyKey<'a>, [i64; 5]>,
    daily_keys: HashMap<DailyKeysKey<'a>, [i64; 5]>,
    workspace: HashMap<WorkspaceKey<'a>, [i64; 5]>,
    reservation_ids: Vec<&'a str>,
    /// Holds served from budget leases (PostgreSQL): lease -> charge.
    leases: HashMap<LeaseId, i64>,
    /// Each secret's last use (`key_secrets`): secret id -> latest completion and the
    /// client of that request. Folded in here like the key's `last_used_at`, so it costs no
    /// write per request.
    secrets: HashMap<i64, (i64, Option<&'a str>)>,
    /// The rollup shard the batch adds to (see [`BatchPlan::new`]).
    shard: i64,
}

impl<'a> BatchPlan<'a> {
    /// The rollups stay empty when the rows are not written (`Rows::Skip`); rollup rows
    /// go to `shard` (0 on SQLite; a process's own on PostgreSQL: migration 0019).
    ///
    /// Long on purpose: one pass over the batch, one arm per kind of hold (lease,
    /// in-memory, reservation row, none), each summing what its settlement changes.
    fn new(batch: &'a [UsageEntry], rows: Rows, shard: i64) -> Self {
        let mut plan = BatchPlan {
            accounts: HashMap::new(),
            keys: HashMap::new(),
            charges: HashMap::new(),
            daily: HashMap::new(),
            daily_keys: HashMap::new(),
            workspace: HashMap::new(),
            reservation_ids: Vec::new(),
            leases: HashMap::new(),
            secrets: HashMap::new(),
            shard,
        };
        for e in batch {
            let u = &e.usage;
            // Last use is the last request served: a refused one (a dead key, a limit, a
            // bad request) must not make a key look in use, nor wake a key disabled for
            // going unused (`disable_after_days`). 0 means "no use" (the SQL's `nullif`).
            let served = u.status == UsageStatus::Ok;
            let used_at = if served { u.completed_at } else { 0 };
            if let Some(id) = u.secret_id.filter(|_| served) {
                let last = plan.secrets.entry(id).or_insert((i64::MIN, None));
                if u.completed_at >= last.0 {
                    *last = (u.completed_at, u.client.as_deref());
                }
            }
            let cost = u.cost.micros();
            match e.reservation.as_ref().map(|r| (r, &r.source)) {
                Some((r, HoldSource::Lease(lease))) => {
                    // The key's counters count the whole slice already, and the charge goes
                    // to the lease row alone, folded into the account later
                    // (`store::lease_book`): no row another process's batch touches.
                    let charge = cost.min(r.amount.micros());
                    *plan.leases.entry(*lease).or_default() += charge;
                    if served {
                        let k = plan.keys.entry((u.key_id.0, -1, -1)).or_default();
                        k.last_used = k.last_used.max(used_at);
                    }
                }
                Some((r, HoldSource::Memory)) => {
                    let charge = cost.min(r.amount.micros());
                    plan.accounts.entry(r.account_id.0).or_default().1 += charge;
                    let c = plan
                        .charges
                        .entry((r.key_id.0, r.day, r.month))
                        .or_default();
                    c.charge += charge;
                    c.last_used = c.last_used.max(used_at);
                }
                Some((r, HoldSource::Row(id))) => {
                    let charge = cost.min(r.amount.micros());
                    let a = plan.accounts.entry(r.account_id.0).or_default();
                    a.0 += r.amount.micros();
                    a.1 += charge;
                    let k = plan.keys.entry((r.key_id.0, r.day, r.month)).or_default();
                    k.release += r.amount.micros();
                    k.charge += charge;
                    k.last_used = k.last_used.max(used_at);
                    plan.reservation_ids.push(id);
                }
                None if served => {
                    let k = plan.keys.entry((u.key_id.0, -1, -1)).or_default();
                    k.last_used = k.last_used.max(used_at);
                }
                None => {}
            }
            if rows == Rows::Skip {
                continue;
            }
            // Exactly the dimensions the filters use, computed as `filter_sql` does on raw
            // rows, so rollup sums equal raw sums for any filter on whole days.
            let key = DailyKey {
                account_id: u.account_id.0,
                day: time_util::day_number(u.started_at),
                key_id: u.key_id.0,
                key_name: &u.key_name,
                model: u.resolved_model.as_deref().unwrap_or(""),
                provider: u.provider.as_deref().unwrap_or(""),
                region: u.region.as_deref().unwrap_or(""),
                status: u.status.as_str(),
                error_code: u.error_code.map_or("", ErrorCode::as_str),
                shard,
            };
            let n = [
                1,
                i64::from(u.status != UsageStatus::Ok),
                u.prompt_tokens,
                u.completion_tokens,
                cost,
            ];
            for sums in [
                plan.daily.entry(key).or_default(),
                plan.daily_keys.entry(key.keys_key()).or_default(),
                plan.workspace.entry(key.workspace_key()).or_default(),
            ] {
                for (s, n) in sums.iter_mut().zip(n) {
                    *s += n;
                }
            }
        }
        plan
    }

    /// Rare path: some holds were already released by the sweeper (their request outlived
    /// the sweep cutoff), so for those only the charge is applied.
    fn unrelease_swept(&mut self, batch: &[UsageEntry], live: &[String]) {
        for r in batch.iter().filter_map(|e| e.reservation.as_ref()) {
            let HoldSource::Row(id) = &r.source else {
                continue;
            };
            if live.contains(id) {
                continue;
            }
            if let Some(a) = self.accounts.get_mut(&r.account_id.0) {
                a.0 -= r.amount.micros();
            }
            if let Some(k) = self.keys.get_mut(&(r.key_id.0, r.day, r.month)) {
                k.release -= r.amount.micros();
            }
        }
    }
}

/// A map's entries sorted by key.
fn sorted<K: Ord, V>(m: &HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

/// What a batch writes: its usage rows with their settlements, or (for rows the database
/// refused, see `gateway::usage_writer`) only the settlements, so that a hold is never left
/// locked and a delivered response is never free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    Write,
    Skip,
}

impl PgStore {
    /// [`Store::write_usage_batch`] for the group-commit writer, writing last uses only
    /// when due ([`LastUseWrites`]).
    pub async fn write_usage_batch(
        &self,
        batch: &[UsageEntry],
        last_use: &mut LastUseWrites,
    ) -> Result<()> {
        write_postgres(&self.pool, batch, (Rows::Write, self.shard), Some(last_use)).await
    }
}

impl Store {
    /// Writes a batch of usage rows, settles their reservations and updates the rollups and
    /// `last_used_at`, all in one transaction: one commit for many requests (group commit).
    pub async fn write_usage_batch(&self, batch: &[UsageEntry]) -> Result<()> {
        self.write_batch(batch, Rows::Write).await
    }

    /// Settles the entries' holds (releasing each, charging its `cost`) and advances
    /// `last_used_at`, without their usage rows or rollups: for rows the database refused.
    pub async fn settle_unrecorded(&self, batch: &[UsageEntry]) -> Result<()> {
        self.write_batch(batch, Rows::Skip).await
    }

    async fn write_batch(&self, batch: &[UsageEntry], rows: Rows) -> Result<()> {
        match &self.engine {
            Engine::Sqlite { file, .. } => {
                let sqlite = SqliteStore { file: file.clone() };
                let batch = batch.to_vec();
                // Number 0: leaves every account's `settled_seq` as it is.
                tokio::task::spawn_blocking(move || sqlite.apply_blocking(&batch, 0, rows)).await?
            }
            Engine::Postgres { pool, shard, .. } => {
                write_postgres(pool, batch, (rows, *shard), None).await
            }
        }
    }
}

impl SqliteStore {
    /// If the checkpointer found the WAL over its bound, checkpoints it completely and
    /// starts it over, on the calling thread, which must be the one that writes usage (see
    /// `SqliteFile::wal_full`). Blocks for a few milliseconds when it does.
    pub fn restart_wal_if_full(&self) -> Result<()> {
        Ok(self.file.restart_wal_if_full()?)
    }

    /// Journaled entries into the database on the calling thread (it blocks for
    /// the commit), through this thread's read-write connection. `seq`: the highest batch
    /// number among them, stored as `settled_seq` on the accounts they settle (the hold book
    /// counts the charges of batches above an account's number; see `gateway::holds`).
    pub fn apply_usage_blocking(&self, batch: &[UsageEntry], seq: i64) -> Result<()> {
        self.apply_blocking(batch, seq, Rows::Write)
    }

    /// As [`Store::settle_unrecorded`], on the calling thread, numbered `seq`.
    pub fn settle_unrecorded_blocking(&self, batch: &[UsageEntry], seq: i64) -> Result<()> {
        self.apply_blocking(batch, seq, Rows::Skip)
    }

    fn apply_blocking(&self, batch: &[UsageEntry], seq: i64, rows: Rows) -> Result<()> {
        sqlite_direct::with_writer(&self.file.path, |c| write_sqlite(c, batch, seq, rows))?;
        Ok(())
    }

    /// At start: applies the journal's entries that are not in the database yet
    /// (a killed process answered them but had not applied them), in one transaction.
    /// Returns how many were missing.
    pub fn replay_usage_journal(&self, records: Vec<usage_journal::Record>) -> Result<usize> {
        let Some(seq) = records.iter().map(|r| r.seq).max() else {
            return Ok(0);
        };
        let path = &self.file.path;
        let missing = sqlite_direct::with_writer(path, |c| {
            let mut exists = c.prepare("select 1 from usage where generation_id = ?1")?;
            let mut missing = Vec::new();
            for e in records.into_iter().flat_map(|r| r.entries) {
                if !exists.exists([&e.usage.generation_id])? {
                    missing.push(e);
                }
            }
            Ok(missing)
        })?;
        if !missing.is_empty() {
            self.apply_usage_blocking(&missing, seq)?;
        }
        Ok(missing.len())
    }

    /// The highest batch number any account's settlement stored.
    pub fn max_settled_seq(&self) -> Result<i64> {
        Ok(sqlite_direct::with_writer(&self.file.path, |c| {
            c.query_row(
                "select coalesce(max(settled_seq), 0) from accounts",
                [],
                |r| r.get(0),
            )
        })?)
    }
}

#[cfg(test)]
mod tests;
