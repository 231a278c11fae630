//! Usage retention: raw rows past `usage_retention_days` go (the hourly job in
//! `spawn_housekeeping`, and `lowrouter usage purge`); the rollups every figure reads stay.

use std::time::Duration;

use crate::domain::time_util;
use crate::store::{Store, StoreError};

/// How long audit events and raw usage rows are kept (days; usage 0: forever).
pub(super) struct Retention {
    pub audit_days: u32,
    pub usage_days: u32,
}

/// Rows per step of usage retention, and the pause between steps: each step is a short
/// write transaction, and the pause leaves the database to the gateway's usage writer, so a
/// run costs the request path next to nothing (bench/RESULTS.md) however much it removes.
const PURGE_STEP: i64 = 1_000;
const PURGE_PAUSE: Duration = Duration::from_millis(20);

/// What a retention run removed: whole day partitions (PostgreSQL), and rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Purged {
    pub days: u32,
    pub rows: u64,
}

/// Removes raw usage rows that started before `cutoff`, step by step until none is left.
/// SQLite reuses the freed pages for new rows (the file stops growing rather than shrinks).
pub async fn purge_usage(store: &Store, cutoff: i64) -> Result<Purged, StoreError> {
    let today = time_util::day_number(time_util::now_ms());
    // PostgreSQL: whole days go as partitions, one at a time; the cutoff's own day by rows.
    let days = store
        .drop_usage_partitions_before(time_util::day_number(cutoff), today)
        .await?;
    if days > 0 {
        tracing::info!(
            days,
            "usage day partitions past retention dropped (rollups kept)"
        );
    }
    let mut removed = 0;
    loop {
        match store.purge_usage_step(cutoff, PURGE_STEP).await? {
            0 => break,
            n => removed += n,
        }
        tokio::time::sleep(PURGE_PAUSE).await;
    }
    if removed > 0 {
        tracing::info!(removed, "usage rows past retention removed (rollups kept)");
    }
    Ok(Purged {
        days,
        rows: removed,
    })
}
