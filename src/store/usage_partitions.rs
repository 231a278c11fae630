//! PostgreSQL's day partitions of `usage` (migration 0025): one per UTC day, `usage_YYYYMMDD`,
//! created a week ahead and dropped whole by retention. SQLite has none: these are no-ops
//! there, and its retention removes rows in steps (`Store::purge_usage_step`).
//!
//! Two processes never race: every create or drop runs in its own short transaction holding
//! one advisory lock ([`PARTITION_LOCK`]), and checks what exists under it. A drop waits at
//! most [`DROP_LOCK_TIMEOUT`] for the parent's lock (a drop needs it exclusively, briefly;
//! queued behind a long export it would stall every request's insert), and is tried again
//! at the next run.

use time::macros::format_description;

use super::{Engine, Result, Store};
use crate::domain::time_util;

/// The advisory lock ("LR" and "part") every partition create and drop holds.
const PARTITION_LOCK: (i32, i32) = (0x4c52, 0x7061_7274);

/// Days ahead that have their partition before any row needs it.
pub const DAYS_AHEAD: i64 = 7;

const DROP_LOCK_TIMEOUT: &str = "200ms";

/// The pause after each dropped day (bench/RESULTS.md: retention under load).
const DROP_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// `usage_20261207` for a day number (days since the epoch, UTC).
fn partition_name(day: i64) -> String {
    let date = time_util::from_ms(day * 86_400_000).date();
    let ymd = date
        .format(format_description!("[year][month][day]"))
        .unwrap_or_default();
    format!("usage_{ymd}")
}

/// The day a partition's name stands for.
fn partition_day(name: &str) -> Option<i64> {
    let ymd = name.strip_prefix("usage_")?;
    let date = time::Date::parse(ymd, format_description!("[year][month][day]")).ok()?;
    Some(time_util::day_number(time_util::date_start_ms(date)))
}

/// A transaction holding [`PARTITION_LOCK`] until it ends.
async fn locked(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock($1, $2)")
        .bind(PARTITION_LOCK.0)
        .bind(PARTITION_LOCK.1)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

impl Store {
    /// The day partitions that exist, by day (PostgreSQL; empty on SQLite).
    pub async fn usage_partition_days(&self) -> Result<Vec<i64>> {
        let Engine::Postgres { pool, .. } = &self.engine else {
            return Ok(Vec::new());
        };
        let names: Vec<String> = sqlx::query_scalar(
            "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid \
             where i.inhparent = 'usage'::regclass",
        )
        .fetch_all(pool)
        .await?;
        let mut days: Vec<i64> = names.iter().filter_map(|n| partition_day(n)).collect();
        days.sort_unstable();
        Ok(days)
    }

    /// Creates the partitions of `today` and the [`DAYS_AHEAD`] days after it that do not
    /// exist yet; returns how many it made. A day whose rows already sit in the default
    /// partition (the server was down past the week ahead) keeps them there: that day is
    /// left without a partition, logged, rather than failing the others.
    pub async fn ensure_usage_partitions(&self, today: i64) -> Result<u32> {
        let Engine::Postgres { pool, .. } = &self.engine else {
            return Ok(0);
        };
        let existing = self.usage_partition_days().await?;
        let mut made = 0;
        for day in (today..=today + DAYS_AHEAD).filter(|d| !existing.contains(d)) {
            let mut tx = locked(pool).await?;
            // Another process may have made it while this one waited for the lock.
            let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
                .bind(partition_name(day))
                .fetch_one(&mut *tx)
                .await?;
            if exists {
                continue;
            }
            let sql = format!(
                "create table {} partition of usage for values from ({}) to ({})",
                partition_name(day),
                day * 86_400_000,
                (day + 1) * 86_400_000
            );
            match sqlx::query(&sql).execute(&mut *tx).await {
                Ok(_) => {
                    tx.commit().await?;
                    made += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, day, "a usage day partition could not be created; its rows stay in usage_default");
                }
            }
        }
        Ok(made)
    }

    /// Drops the partitions of days before `cutoff_day` and before `today` (today's takes
    /// the day's new rows), returning how many. Rows of the cutoff's own day that are past
    /// retention are left to [`Store::purge_usage_step`].
    pub async fn drop_usage_partitions_before(&self, cutoff_day: i64, today: i64) -> Result<u32> {
        let Engine::Postgres { pool, .. } = &self.engine else {
            return Ok(0);
        };
        let mut dropped = 0;
        for day in self.usage_partition_days().await? {
            if day >= cutoff_day.min(today) {
                break;
            }
            let mut tx = locked(pool).await?;
            sqlx::query(&format!("set local lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
                .execute(&mut *tx)
                .await?;
            let sql = format!("drop table if exists {}", partition_name(day));
            match sqlx::query(&sql).execute(&mut *tx).await {
                Ok(_) => {
                    tx.commit().await?;
                    dropped += 1;
                }
                Err(e) => {
                    tracing::info!(error = %e, day, "a usage day partition is busy; dropped at the next run");
                    break;
                }
            }
            // One day at a time: each drop removes a day's files and writes WAL, which the
            // gateway's own writes then wait behind; spread out, its p99 barely moves.
            tokio::time::sleep(DROP_PAUSE).await;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_days_round_trip() {
        let day = time_util::day_number(1_796_601_600_000); // 2026-12-07
        assert_eq!(partition_name(day), "usage_20261207");
        assert_eq!(partition_day("usage_20261207"), Some(day));
        assert_eq!(partition_day("usage_default"), None);
        assert_eq!(partition_day("usage_unpartitioned"), None);
    }
}
