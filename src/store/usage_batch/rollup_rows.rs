//! The rollups a batch adds to: their dimensions (each table's primary key, in bind
//! order), the key of one rollup row, and a row as bound values. Both executors bind from
//! these, so no column list is written twice.

use super::Cell;

/// The dimensions of `usage_daily`, its primary key, in bind order.
pub(super) const DAILY_DIMENSIONS: [&str; 10] = [
    "account_id",
    "day",
    "key_id",
    "key_name",
    "model",
    "provider",
    "region",
    "status",
    "error_code",
    "shard",
];

/// The dimensions of `usage_daily_keys`, its primary key, in bind order.
pub(super) const DAILY_KEYS_DIMENSIONS: [&str; 5] =
    ["account_id", "day", "key_id", "key_name", "shard"];

/// The dimensions of `usage_daily_workspace`, its primary key, in bind order.
pub(super) const WORKSPACE_DIMENSIONS: [&str; 8] = [
    "account_id",
    "day",
    "model",
    "provider",
    "region",
    "status",
    "error_code",
    "shard",
];

/// The counters every rollup keeps, in the order their values are bound.
pub(super) const ROLLUP_COUNTERS: [&str; 5] = [
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost",
];

/// Counters, then the dimensions, in the order of [`ROLLUP_COUNTERS`] then the table's.
pub(super) fn counters<'a>(n: &[i64; 5]) -> [Cell<'a>; 5] {
    n.map(Cell::Int)
}

/// A `usage_daily` row: [`DAILY_DIMENSIONS`], then [`ROLLUP_COUNTERS`].
pub(super) fn daily_cells<'a>(k: &DailyKey<'a>, n: &[i64; 5]) -> Vec<Cell<'a>> {
    use Cell::{Int, Text};
    let dims = [
        Int(k.account_id),
        Int(k.day),
        Int(k.key_id),
        Text(k.key_name),
        Text(k.model),
        Text(k.provider),
        Text(k.region),
        Text(k.status),
        Text(k.error_code),
        Int(k.shard),
    ];
    dims.into_iter().chain(counters(n)).collect()
}

/// A `usage_daily_keys` row: [`DAILY_KEYS_DIMENSIONS`], then [`ROLLUP_COUNTERS`].
pub(super) fn daily_keys_cells<'a>(k: &DailyKeysKey<'a>, n: &[i64; 5]) -> Vec<Cell<'a>> {
    use Cell::{Int, Text};
    let dims = [
        Int(k.account_id),
        Int(k.day),
        Int(k.key_id),
        Text(k.key_name),
        Int(k.shard),
    ];
    dims.into_iter().chain(counters(n)).collect()
}

/// A `usage_daily_workspace` row: [`WORKSPACE_DIMENSIONS`], then [`ROLLUP_COUNTERS`].
pub(super) fn workspace_cells<'a>(k: &WorkspaceKey<'a>, n: &[i64; 5]) -> Vec<Cell<'a>> {
    use Cell::{Int, Text};
    let dims = [
        Int(k.account_id),
        Int(k.day),
        Text(k.model),
        Text(k.provider),
        Text(k.region),
        Text(k.status),
        Text(k.error_code),
        Int(k.shard),
    ];
    dims.into_iter().chain(counters(n)).collect()
}

/// The primary key of a `usage_daily` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct DailyKey<'a> {
    pub(super) account_id: i64,
    pub(super) day: i64,
    pub(super) key_id: i64,
    pub(super) key_name: &'a str,
    pub(super) model: &'a str,
    pub(super) provider: &'a str,
    pub(super) region: &'a str,
    pub(super) status: &'a str,
    /// The reason (`error_code`), '' for none.
    pub(super) error_code: &'a str,
    /// The writing process's rollup shard (`Store::rollup_shard`; migration 0019).
    pub(super) shard: i64,
}

/// The primary key of a `usage_daily_keys` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct DailyKeysKey<'a> {
    pub(super) account_id: i64,
    pub(super) day: i64,
    pub(super) key_id: i64,
    pub(super) key_name: &'a str,
    pub(super) shard: i64,
}

/// The primary key of a `usage_daily_workspace` row: a `usage_daily` key without the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct WorkspaceKey<'a> {
    pub(super) account_id: i64,
    pub(super) day: i64,
    pub(super) model: &'a str,
    pub(super) provider: &'a str,
    pub(super) region: &'a str,
    pub(super) status: &'a str,
    pub(super) error_code: &'a str,
    pub(super) shard: i64,
}

impl<'a> DailyKey<'a> {
    pub(super) fn keys_key(&self) -> DailyKeysKey<'a> {
        DailyKeysKey {
            account_id: self.account_id,
            day: self.day,
            key_id: self.key_id,
            key_name: self.key_name,
            shard: self.shard,
        }
    }

    pub(super) fn workspace_key(&self) -> WorkspaceKey<'a> {
        WorkspaceKey {
            account_id: self.account_id,
            day: self.day,
            model: self.model,
            provider: self.provider,
            region: self.region,
            status: self.status,
            error_code: self.error_code,
            shard: self.shard,
        }
    }
}
