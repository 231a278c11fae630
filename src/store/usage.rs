//! SQL that reads `usage` and its daily rollups (`usage_daily`, `usage_daily_keys`,
//! `usage_daily_workspace`): totals and Home here, pages of raw rows in `usage/pages.rs`, the
//! chart in `usage/chart.rs`, exports and time buckets beside them. The write path (one
//! transaction per batch of rows) is in `usage_batch`.

use std::collections::HashMap;

use crate::domain::ids::{KeyId, WorkspaceId};
use sqlx::FromRow;

use super::ledger::Reservation;
use super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::text::GenerationId;
use crate::domain::{Credits, ErrorCode};

pub use crate::domain::reasons::UsageStatus;

/// One authenticated gateway request, as recorded. Journaled as `usage_journal::EntryV1`
/// (its own struct: a change here changes nothing on disk).
#[derive(Debug, Clone)]
pub struct NewUsage {
    pub generation_id: String,
    pub account_id: WorkspaceId,
    pub key_id: KeyId,
    pub key_name: String,
    pub requested_model: String,
    pub resolved_model: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// What was charged: never more than the hold.
    pub cost: Credits,
    pub status: UsageStatus,
    pub http_status: u16,
    pub error_code: Option<ErrorCode>,
    pub streamed: bool,
    pub latency_ms: i64,
    pub started_at: i64,
    pub completed_at: i64,
    /// The secret that served the request (`key_secrets.id`), for its last use; None in
    /// entries journaled before secrets were recorded.
    pub secret_id: Option<i64>,
    /// Its last four characters, kept on the usage row.
    pub secret_last4: Option<String>,
    /// Where the request came from, coarsened (`domain::client_hint`): kept as the
    /// secret's last client, not on the usage row.
    pub client: Option<String>,
}

/// A usage row plus the reservation it settles (if the request got that far).
#[derive(Debug, Clone)]
pub struct UsageEntry {
    pub usage: NewUsage,
    pub reservation: Option<Reservation>,
}

mod filter;
#[cfg(test)]
mod sample;

pub use filter::UsageFilter;
use filter::{filter_sql, rollup_filter_sql, Bind};
#[cfg(test)]
pub(crate) use sample::sample_entry;

#[derive(Debug, Clone, FromRow)]
pub struct UsageRow {
    pub id: i64,
    pub generation_id: String,
    pub key_id: KeyId,
    pub key_name: String,
    pub requested_model: String,
    pub resolved_model: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost: Credits,
    pub status: String,
    pub http_status: i64,
    pub error_code: Option<String>,
    pub streamed: i64,
    pub latency_ms: i64,
    pub started_at: i64,
    pub completed_at: i64,
    pub secret_last4: Option<String>,
}

/// A key's recent traffic beyond its row ([`Store::key_activity`]).
#[derive(Debug, Clone, Default)]
pub struct KeyActivity {
    /// The model of the last served request.
    pub last_model: Option<String>,
    pub last_refusal: Option<LastRefusal>,
}

/// The last request a key refused or failed: when, with what, and which (for its page).
#[derive(Debug, Clone)]
pub struct LastRefusal {
    pub at: i64,
    pub http_status: i64,
    pub code: Option<String>,
    pub generation_id: String,
}

#[derive(FromRow)]
struct ActivityRow {
    key_id: KeyId,
    last_model: Option<String>,
    refused_at: Option<i64>,
    refused_status: Option<i64>,
    refused_code: Option<String>,
    refused_generation: Option<String>,
}

pub(crate) const USAGE_COLUMNS: &str = "id, generation_id, key_id, key_name, requested_model, resolved_model, provider, \
    region, prompt_tokens, completion_tokens, total_tokens, cost, status, http_status, error_code, streamed, \
    latency_ms, started_at, completed_at, secret_last4";

impl Store {
    /// What the Keys pages and the API show of the keys' recent traffic beyond their rows
    /// (which hold the last success's time): the model of each key's last served request,
    /// and its last refusal. One query for every live key of the workspace (or one key), by
    /// key id, so a renamed key keeps them and a new key with an old key's name does not
    /// inherit them. The last refusal comes from the partial index of refused rows
    /// (migration 0020).
    pub async fn key_activity(
        &self,
        account_id: WorkspaceId,
        only: Option<KeyId>,
    ) -> Result<HashMap<KeyId, KeyActivity>> {
        let sql = format!(
            "select k.id as key_id, \
               (select coalesce(u.resolved_model, u.requested_model) from usage u \
                where u.account_id = k.account_id and u.key_id = k.id and u.status = 'ok' \
                order by u.started_at desc, u.id desc limit 1) as last_model, \
               r.completed_at as refused_at, r.http_status as refused_status, \
               r.error_code as refused_code, r.generation_id as refused_generation \
             from api_keys k \
             left join usage r on r.id = (select u.id from usage u \
                where u.key_id = k.id and u.status <> 'ok' order by u.id desc limit 1) \
             where k.account_id = $1 and k.status <> 'revoked'{}",
            if only.is_some() { " and k.id = $2" } else { "" }
        );
        let rows: Vec<ActivityRow> = on_read!(self, pool => {
            let q = sqlx::query_as::<_, ActivityRow>(&sql).bind(account_id);
            let q = match only { Some(id) => q.bind(id), None => q };
            q.fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|r| {
                let refusal = match (r.refused_at, r.refused_generation) {
                    (Some(at), Some(generation_id)) => Some(LastRefusal {
                        at,
                        http_status: r.refused_status.unwrap_or_default(),
                        code: r.refused_code,
                        generation_id,
                    }),
                    _ => None,
                };
                (
                    r.key_id,
                    KeyActivity {
                        last_model: r.last_model,
                        last_refusal: refusal,
                    },
                )
            })
            .collect())
    }

    /// One step of usage retention: removes those of the `batch` oldest rows (by id) that
    /// started before `cutoff` (unix ms), returning how many. Small steps, each its own
    /// short transaction, so the gateway's usage writes wait at most one step. Ids follow
    /// write order, which trails start order by at most a request's duration, so a row that
    /// started before the cutoff but was written late goes a step or a run later; 0 means
    /// the oldest rows are all younger than `cutoff`. Rollups are untouched: every total
    /// reads them, so removing raw rows changes no figure.
    ///
    /// PostgreSQL drops whole day partitions first (`drop_usage_partitions_before`); what
    /// is left past the cutoff is part of one day (and any strays in `usage_default`), so
    /// there the step reads by start time, pruned to those partitions.
    pub async fn purge_usage_step(&self, cutoff: i64, batch: i64) -> Result<u64> {
        let sql = match &self.engine {
            super::Engine::Sqlite { .. } => {
                "delete from usage where id in (select id from usage order by id limit $2) \
                 and started_at < $1"
            }
            super::Engine::Postgres { .. } => {
                "delete from usage where (id, started_at) in \
                 (select id, started_at from usage where started_at < $1 limit $2)"
            }
        };
        Ok(on_write!(self, pool => {
            sqlx::query(sql)
                .bind(cutoff)
                .bind(batch)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// One usage row of this account by generation id.
    pub async fn usage_by_generation(
        &self,
        account_id: WorkspaceId,
        generation_id: &GenerationId,
    ) -> Result<UsageRow> {
        // Ids made by the gateway start with the time the request ended, no earlier than it
        // started: on PostgreSQL the day before that time is looked at first (one or two
        // day partitions), then, for anything else, every partition.
        let ended = generation_id
            .as_str()
            .strip_prefix("gen-")
            .and_then(|r| r.get(..13))
            .and_then(|d| d.parse::<i64>().ok())
            .filter(|_| matches!(self.engine, super::Engine::Postgres { .. }));
        let sql = format!(
            "select {USAGE_COLUMNS} from usage where generation_id = $1 and account_id = $2"
        );
        if let Some(t) = ended {
            let near = format!("{sql} and started_at <= $3 and started_at > $3 - {DAY_MS}");
            let found = on_read!(self, pool => {
                sqlx::query_as::<_, UsageRow>(&near)
                    .bind(generation_id.as_str())
                    .bind(account_id)
                    .bind(t)
                    .fetch_optional(pool)
                    .await?
            });
            if let Some(row) = found {
                return Ok(row);
            }
        }
        on_read!(self, pool => {
            sqlx::query_as::<_, UsageRow>(&sql)
                .bind(generation_id.as_str())
                .bind(account_id)
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }
}

pub(crate) const DAY_MS: i64 = 86_400_000;

/// Rows per query of the CSV export.
pub const EXPORT_PAGE: i64 = 10_000;

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::store::usage::filter::Bind::Int(i) => q.bind(*i),
                $crate::store::usage::filter::Bind::Text(s) => q.bind(*s),
            };
        }
        q
    }};
}

mod buckets;
mod chart;
mod export;
mod pages;
pub use buckets::{BucketQuery, BucketRow};
pub use export::{ExportCells, ExportRow};
pub use pages::RowCursor;
use pages::Seek;

#[derive(Debug, Clone, Default, FromRow)]
pub struct UsageTotals {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: Credits,
    pub errors: i64,
}

/// One bar segment of the chart: spend of one key on one day.
#[derive(Debug, Clone, FromRow)]
pub struct DailySpend {
    pub day: i64,
    pub key_name: String,
    pub cost: Credits,
}

impl Store {
    /// Totals for the filter: from the daily rollup whenever it can answer exactly (any
    /// filter on whole UTC days), so even the unfiltered view never counts raw rows.
    pub async fn usage_totals(
        &self,
        account_id: WorkspaceId,
        f: &UsageFilter,
    ) -> Result<UsageTotals> {
        const SUMS: &str = "cast(coalesce(sum(prompt_tokens), 0) as bigint) as prompt_tokens, \
             cast(coalesce(sum(completion_tokens), 0) as bigint) as completion_tokens, \
             cast(coalesce(sum(cost), 0) as bigint) as cost";
        let (sql, binds) = match rollup_filter_sql(account_id, f) {
            Some((w, binds)) => (
                format!(
                    "select cast(coalesce(sum(requests), 0) as bigint) as requests, {SUMS}, \
                     cast(coalesce(sum(errors), 0) as bigint) as errors{w}"
                ),
                binds,
            ),
            None => {
                let (w, binds) = filter_sql(account_id, f);
                (
                    format!(
                        "select count(*) as requests, {SUMS}, \
                         cast(coalesce(sum(case when status <> 'ok' then 1 else 0 end), 0) as bigint) as errors \
                         from usage{w}"
                    ),
                    binds,
                )
            }
        };
        Ok(
            on_read!(self, pool => bind_all!(sqlx::query_as::<_, UsageTotals>(&sql), &binds).fetch_one(pool).await?),
        )
    }
}

/// A ranked line of the dashboard home ("top keys", "top models").
#[derive(Debug, Clone, FromRow)]
pub struct Ranked {
    pub name: String,
    pub requests: i64,
    pub cost: Credits,
}

impl Store {
    /// Spend from `from_day` (inclusive) to today, from the daily rollup.
    pub async fn spend_since_day(&self, account_id: WorkspaceId, from_day: i64) -> Result<i64> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "select cast(coalesce(sum(cost), 0) as bigint) from usage_daily_workspace where account_id = $1 and day >= $2",
            )
            .bind(account_id)
            .bind(from_day)
            .fetch_one(pool)
            .await?
        }))
    }

    /// What a key has spent since it was created (its account's rows only), from the rollup.
    pub async fn key_spend_total(&self, account_id: WorkspaceId, key_id: KeyId) -> Result<i64> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "select cast(coalesce(sum(cost), 0) as bigint) from usage_daily_keys where account_id = $1 and key_id = $2",
            )
            .bind(account_id)
            .bind(key_id)
            .fetch_one(pool)
            .await?
        }))
    }

    /// Top keys (`by_key`) or models by spend since `from_day`, from the daily rollup.
    pub async fn top_since_day(
        &self,
        account_id: WorkspaceId,
        from_day: i64,
        by_key: bool,
        limit: i64,
    ) -> Result<Vec<Ranked>> {
        let (col, table) = if by_key {
            ("key_name", "usage_daily_keys")
        } else {
            ("model", "usage_daily_workspace")
        };
        let sql = format!(
            "select {col} as name, cast(sum(requests) as bigint) as requests, cast(sum(cost) as bigint) as cost \
             from {table} where account_id = $1 and day >= $2 and {col} <> '' group by {col} order by cost desc, requests desc limit $3"
        );
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, Ranked>(&sql).bind(account_id).bind(from_day).bind(limit).fetch_all(pool).await?
        }))
    }
}
