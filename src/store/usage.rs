//! SQL that reads `usage` and its daily rollups `usage_daily` and `usage_daily_keys`. The
//! write path (one transaction per batch of rows) is in `usage_batch`.

use std::collections::HashMap;

use crate::domain::ids::{KeyId, WorkspaceId};
use sqlx::FromRow;

use super::ledger::Reservation;
use super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::text::GenerationId;
use crate::domain::Credits;

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
    /// Micro-credits charged.
    pub cost: i64,
    pub status: UsageStatus,
    pub http_status: u16,
    pub error_code: Option<String>,
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
use filter::{filter_sql, rollup_filter_sql, rollup_filter_sql_in, Bind, Rollup};
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

    /// The start of the oldest raw row of the workspace (unix ms), for saying how far
    /// back request-level history goes.
    pub async fn oldest_usage_at(&self, account_id: WorkspaceId) -> Result<Option<i64>> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "select started_at from usage where account_id = $1 order by started_at, id limit 1",
            )
            .bind(account_id)
            .fetch_optional(pool)
            .await?
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

/// Keys the chart draws on their own; the others are one series.
pub const CHART_KEYS: usize = 7;

/// The chart's series from per-day rows: with `totals`, rows named `""` are each day's total
/// and the named rows its top keys, so "Other keys" is the difference; without, every key's
/// rows (raw rows), of which the [`CHART_KEYS`] that spent most stay and the rest are summed.
fn top_and_others(rows: Vec<DailySpend>, totals: bool) -> Vec<DailySpend> {
    use std::collections::BTreeMap;
    let (named, day_totals): (Vec<DailySpend>, Vec<DailySpend>) =
        rows.into_iter().partition(|r| !r.key_name.is_empty());
    let mut spend: HashMap<&str, i64> = HashMap::new();
    for r in &named {
        *spend.entry(&r.key_name).or_default() += r.cost.micros();
    }
    let mut ranked: Vec<(&str, i64)> = spend.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = ranked
        .iter()
        .take(CHART_KEYS)
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let mut others: BTreeMap<i64, i64> = BTreeMap::new();
    if totals {
        for t in &day_totals {
            *others.entry(t.day).or_default() += t.cost.micros();
        }
    }
    let mut out = Vec::new();
    for r in named {
        if top.contains(&r.key_name) {
            if totals {
                *others.entry(r.day).or_default() -= r.cost.micros();
            }
            out.push(r);
        } else {
            *others.entry(r.day).or_default() += r.cost.micros();
        }
    }
    out.extend(
        others
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .map(|(day, c)| DailySpend {
                day,
                key_name: String::new(),
                cost: Credits::from_micros(c),
            }),
    );
    out.sort_by(|a, b| a.day.cmp(&b.day).then(a.key_name.cmp(&b.key_name)));
    out
}

/// Rows per query of the CSV export.
pub const EXPORT_PAGE: i64 = 10_000;

macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(s) => q.bind(*s),
            };
        }
        q
    }};
}

mod buckets;
mod export;
pub use buckets::{BucketQuery, BucketRow};
pub use export::{ExportCells, ExportRow};

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

/// Where a keyset page starts: a row, by id, with its start when known (page links carry
/// it, so no lookup is needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCursor {
    pub id: i64,
    pub started_at: Option<i64>,
}

impl RowCursor {
    pub fn of(row: &UsageRow) -> Self {
        RowCursor {
            id: row.id,
            started_at: Some(row.started_at),
        }
    }

    /// `before=<id>&at=<started_at>` (or `after=`): the query of a page link.
    pub fn query(&self, name: &str) -> String {
        match self.started_at {
            Some(t) => format!("{name}={}&at={t}", self.id),
            None => format!("{name}={}", self.id),
        }
    }
}

/// Newest first: the order of every page of raw rows, and of the indexes they walk
/// (`usage_account_time`, `usage_key_time`): a date range is a range of the index.
const NEWEST_FIRST: &str = "order by started_at desc, id desc";
const OLDEST_FIRST: &str = "order by started_at asc, id asc";

/// The filter narrowed to `window` ms from where the walk starts, in its direction, and
/// whether that is the whole filter already (the last try). No window: the whole filter.
fn windowed(f: &UsageFilter, seek: Seek, window: Option<i64>, now: i64) -> (UsageFilter, bool) {
    // The cursor's start as a plain date bound too: SQLite, which has no statistics,
    // otherwise may start its index range at the filter's own bound and re-read every
    // earlier page's rows (an export's pages got slower and slower).
    let mut f = f.clone();
    match seek {
        Seek::Before(t, _) => f.to_ms = Some(f.to_ms.map_or(t + 1, |to| to.min(t + 1))),
        Seek::After(t, _) | Seek::OldestAfter(Some((t, _))) => {
            f.from_ms = Some(f.from_ms.map_or(t, |from| from.max(t)))
        }
        Seek::First | Seek::OldestAfter(None) => {}
    }
    let f = &f;
    let Some(w) = window else {
        return (f.clone(), true);
    };
    let mut narrowed = f.clone();
    match seek {
        Seek::First | Seek::Before(..) => {
            // Rows start no later than now (an hour of slack for clocks).
            let end = match seek {
                Seek::Before(t, _) => t + 1,
                _ => f.to_ms.unwrap_or(now + 3_600_000),
            };
            let from = end - w;
            if f.from_ms.is_some_and(|start| start >= from) {
                return (narrowed, true);
            }
            narrowed.from_ms = Some(from);
        }
        Seek::After(t, _) | Seek::OldestAfter(Some((t, _))) => {
            let to = t + w;
            if f.to_ms.is_some_and(|end| end <= to) {
                return (narrowed, true);
            }
            narrowed.to_ms = Some(to);
        }
        Seek::OldestAfter(None) => match f.from_ms {
            Some(start) if f.to_ms.is_none_or(|end| end > start + w) => {
                narrowed.to_ms = Some(start + w);
            }
            _ => return (narrowed, true),
        },
    }
    (narrowed, false)
}

/// The SQL of one page (see [`Store::usage_page`]) and its binds.
fn page_sql<'a>(
    account_id: WorkspaceId,
    f: &'a UsageFilter,
    seek: Seek,
    limit: i64,
    columns: &str,
    keys: &[i64],
) -> (String, Vec<Bind<'a>>) {
    let (mut w, mut binds) = filter_sql(account_id, f);
    let (bound, order) = match seek {
        Seek::First => (None, NEWEST_FIRST),
        Seek::Before(t, id) => (Some(("<", t, id)), NEWEST_FIRST),
        Seek::After(t, id) | Seek::OldestAfter(Some((t, id))) => (Some((">", t, id)), OLDEST_FIRST),
        Seek::OldestAfter(None) => (None, OLDEST_FIRST),
    };
    if let Some((cmp, t, id)) = bound {
        binds.push(Bind::Int(t));
        binds.push(Bind::Int(id));
        let n = binds.len();
        w.push_str(&format!(" and (started_at, id) {cmp} (${}, ${n})", n - 1));
    }
    binds.push(Bind::Int(limit));
    let limit_at = binds.len();
    let arm =
        |extra: &str| format!("select {columns} from usage{w}{extra} {order} limit ${limit_at}");
    let sql = if keys.is_empty() {
        arm("")
    } else {
        let arms: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, _)| {
                format!(
                    "select * from ({}) as k{i}",
                    arm(&format!(" and key_id = ${}", limit_at + 1 + i))
                )
            })
            .collect();
        format!(
            "select * from ({}) as merged {order} limit ${limit_at}",
            arms.join(" union all ")
        )
    };
    binds.extend(keys.iter().map(|id| Bind::Int(*id)));
    (sql, binds)
}

/// At most this many key ids (a name shared by keys deleted and made again) are read as one
/// walk each, merged; more, and the page walks the workspace's rows by time instead.
const KEY_WALKS: usize = 16;

/// Where a page starts: strictly older (`Before`) or newer (`After`) than a row, by
/// `(started_at, id)`.
#[derive(Debug, Clone, Copy)]
enum Seek {
    First,
    Before(i64, i64),
    After(i64, i64),
    /// Oldest first, from strictly after a row (or from the start): the period export.
    OldestAfter(Option<(i64, i64)>),
}

impl Store {
    /// The `(started_at, id)` of a row of this workspace, for a cursor that names the row by
    /// id. None when there is no such row (another workspace's, or removed by retention).
    async fn cursor_of(&self, account_id: WorkspaceId, id: i64) -> Result<Option<(i64, i64)>> {
        let started: Option<i64> = on_read!(self, pool => {
            sqlx::query_scalar("select started_at from usage where id = $1 and account_id = $2")
                .bind(id)
                .bind(account_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(started.map(|s| (s, id)))
    }

    /// A cursor's `(started_at, id)`: as given, or looked up by id (one probe per day
    /// partition on PostgreSQL, which is why page links carry the start). None when an
    /// id-only cursor is not a row of this workspace (or no longer there).
    async fn position(&self, account_id: WorkspaceId, c: RowCursor) -> Result<Option<(i64, i64)>> {
        match c.started_at {
            // A position only: a made-up one moves the page, never past the workspace.
            Some(t) => Ok(Some((t, c.id))),
            None => self.cursor_of(account_id, c.id).await,
        }
    }

    /// Where a page older than `before` starts (the first page without one); None when
    /// the cursor names no row of this workspace.
    async fn seek_before(
        &self,
        account_id: WorkspaceId,
        before: Option<RowCursor>,
    ) -> Result<Option<Seek>> {
        Ok(match before {
            None => Some(Seek::First),
            Some(c) => self
                .position(account_id, c)
                .await?
                .map(|(t, id)| Seek::Before(t, id)),
        })
    }

    /// The keys whose rows a name filter matches, from the rollup (names as recorded, so a
    /// renamed key's old name and a deleted key's name still match): a name filter then
    /// reads raw rows by key id and time. None when the filter names no key.
    async fn keys_named(
        &self,
        account_id: WorkspaceId,
        f: &UsageFilter,
    ) -> Result<Option<Vec<i64>>> {
        let (cond, name) = match (&f.key_name, &f.key_name_like) {
            (Some(n), _) => ("key_name = $2", n),
            (None, Some(p)) => ("lower(key_name) like $2 escape '!'", p),
            (None, None) => return Ok(None),
        };
        // The names by a loose index scan (one seek per name, not a pass over every key's
        // days), those that match, then their keys by the name index. An `in` list, not a
        // join: SQLite, without statistics, would scan the names once per rollup row.
        let sql = format!(
            "with recursive names(name) as ( \
               select min(key_name) from usage_daily_keys where account_id = $1 \
               union all \
               select (select min(key_name) from usage_daily_keys where account_id = $1 and key_name > names.name) \
               from names where names.name is not null \
             ) select distinct key_id from usage_daily_keys where account_id = $1 and key_name in \
               (select name from names where name is not null and {})",
            cond.replace("key_name", "names.name")
        );
        let ids: Vec<i64> = on_read!(self, pool => {
            sqlx::query_scalar(&sql).bind(account_id).bind(name.as_str()).fetch_all(pool).await?
        });
        Ok(Some(ids))
    }

    /// A page of raw rows in `seek`'s direction, returned newest first: one walk along
    /// `(started_at, id)` of the workspace's rows, or of each key the name filter resolves
    /// to, merged. `columns` must include `started_at` and `id` (the merge orders by them).
    ///
    /// On PostgreSQL the walk is tried in growing time windows from where it starts (a
    /// day, a week, a month, then unbounded), since with a default partition PostgreSQL
    /// merges every day partition's index for an unbounded walk (about 0.1 ms each, so
    /// 40 ms at 400 days) but prunes to the window's few when it has one. A window that
    /// yields a full page is the answer; a sparse workspace pays a few short queries.
    async fn usage_page<T>(
        &self,
        account_id: WorkspaceId,
        f: &UsageFilter,
        seek: Seek,
        limit: i64,
        columns: &str,
    ) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        let keys = match self.keys_named(account_id, f).await? {
            Some(ids) if ids.is_empty() => return Ok(Vec::new()),
            Some(ids) if f.key_id.is_none() && ids.len() <= KEY_WALKS => ids,
            _ => Vec::new(),
        };
        const WINDOWS: [Option<i64>; 4] = [Some(DAY_MS), Some(7 * DAY_MS), Some(31 * DAY_MS), None];
        let windows: &[Option<i64>] = match self.engine {
            super::Engine::Postgres { .. } => &WINDOWS,
            super::Engine::Sqlite { .. } => &[None],
        };
        let now = crate::domain::time_util::now_ms();
        for window in windows {
            let (narrowed, last) = windowed(f, seek, *window, now);
            let (sql, binds) = page_sql(account_id, &narrowed, seek, limit, columns, &keys);
            let mut rows = on_read!(self, pool => bind_all!(sqlx::query_as::<_, T>(&sql), &binds).fetch_all(pool).await?);
            if last || rows.len() as i64 >= limit {
                if matches!(seek, Seek::After(..)) {
                    rows.reverse();
                }
                return Ok(rows);
            }
        }
        Ok(Vec::new())
    }

    /// A page of rows, newest first (by start time), strictly older than the row
    /// `before` (keyset pagination: stable while new rows arrive, no OFFSET scan).
    pub async fn list_usage(
        &self,
        account_id: WorkspaceId,
        f: &UsageFilter,
        before: Option<RowCursor>,
        limit: i64,
    ) -> Result<Vec<UsageRow>> {
        match self.seek_before(account_id, before).await? {
            Some(seek) => {
                self.usage_page(account_id, f, seek, limit, USAGE_COLUMNS)
                    .await
            }
            None => Ok(Vec::new()),
        }
    }

    /// A page of rows strictly newer than the row `after`, the oldest `limit` of them,
    /// returned newest first (the page before a keyset page, for a "Newer" link).
    pub async fn list_usage_after(
        &self,
        account_id: WorkspaceId,
        f: &UsageFilter,
        after: RowCursor,
        limit: i64,
    ) -> Result<Vec<UsageRow>> {
        match self.position(account_id, after).await? {
            Some((t, id)) => {
                self.usage_page(account_id, f, Seek::After(t, id), limit, USAGE_COLUMNS)
                    .await
            }
            None => Ok(Vec::new()),
        }
    }

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

    /// Spend per day for the chart: per key name for the [`CHART_KEYS`] keys that spent
    /// most in the period, the others summed under the name `""`; or per day only (name
    /// `""`), when the filter is by model, provider, region or status and by no key (so a
    /// workspace with a thousand keys reads its workspace rollup, not every key's days).
    /// From the rollups when the dates are whole days.
    pub async fn daily_spend(
        &self,
        account_id: WorkspaceId,
        f: &UsageFilter,
    ) -> Result<Vec<DailySpend>> {
        // Per key unless the filter has dimensions and no key (then only the workspace
        // rollup is narrow enough); with no filter, the per-key rollup.
        let per_key = f.has_key() || !f.has_dimensions();
        let rollup = match Rollup::for_filter(f) {
            Rollup::Workspace if per_key => Rollup::Keys,
            r => r,
        };
        let Some((w, binds)) = rollup_filter_sql_in(account_id, f, rollup) else {
            // Dates that are not whole days: raw rows, per key name.
            let (w, binds) = filter_sql(account_id, f);
            let sql = format!(
                "select started_at / {DAY_MS} as day, key_name, cast(sum(cost) as bigint) as cost \
                 from usage{w} group by started_at / {DAY_MS}, key_name order by 1, 2"
            );
            let rows: Vec<DailySpend> = on_read!(self, pool => bind_all!(sqlx::query_as::<_, DailySpend>(&sql), &binds).fetch_all(pool).await?);
            return Ok(top_and_others(rows, false));
        };
        // The day totals from the narrowest rollup: with no filter but dates, the
        // workspace's (the same binds: account and dates).
        let totals = if rollup == Rollup::Keys && !f.has_key() {
            rollup_filter_sql_in(account_id, f, Rollup::Workspace).map_or(w.clone(), |t| t.0)
        } else {
            w.clone()
        };
        let sql = if per_key {
            // The period's top keys (one pass over key x day rows), their days (by the
            // name index), and each day's total: the rest is "Other keys".
            format!(
                "with top as (select key_name{w} group by key_name \
                   order by sum(cost) desc, key_name limit {CHART_KEYS}) \
                 select day, key_name, cast(sum(cost) as bigint) as cost{w} \
                   and key_name in (select key_name from top) group by day, key_name \
                 union all \
                 select day, '' as key_name, cast(sum(cost) as bigint) as cost{totals} group by day \
                 order by 1, 2"
            )
        } else {
            format!(
                "select day, '' as key_name, cast(sum(cost) as bigint) as cost{w} \
                 group by day order by 1"
            )
        };
        let rows: Vec<DailySpend> = on_read!(self, pool => bind_all!(sqlx::query_as::<_, DailySpend>(&sql), &binds).fetch_all(pool).await?);
        Ok(if per_key {
            top_and_others(rows, true)
        } else {
            rows
        })
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

#[cfg(test)]
mod chart_tests {
    use super::*;

    fn row(day: i64, name: &str, cost: i64) -> DailySpend {
        DailySpend {
            day,
            key_name: name.into(),
            cost: Credits::from_micros(cost),
        }
    }

    #[test]
    fn the_top_keys_stay_and_the_rest_is_the_days_total_less_them() {
        // Day totals ("") and the top keys' days, as the rollup query returns them.
        let rows = vec![
            row(1, "", 100),
            row(1, "a", 60),
            row(2, "", 10),
            row(2, "b", 10),
        ];
        let out = top_and_others(rows, true);
        let got: Vec<(i64, &str, i64)> = out
            .iter()
            .map(|r| (r.day, r.key_name.as_str(), r.cost.micros()))
            .collect();
        assert_eq!(got, [(1, "", 40), (1, "a", 60), (2, "b", 10)]);
    }

    #[test]
    fn raw_rows_keep_the_biggest_spenders_and_sum_the_rest() {
        let mut rows: Vec<DailySpend> = (0..10).map(|i| row(1, &format!("k{i}"), 10 + i)).collect();
        rows.push(row(2, "k0", 1));
        let out = top_and_others(rows, false);
        let named: Vec<&str> = out
            .iter()
            .filter(|r| !r.key_name.is_empty())
            .map(|r| r.key_name.as_str())
            .collect();
        assert_eq!(named, ["k3", "k4", "k5", "k6", "k7", "k8", "k9"]);
        let others: i64 = out
            .iter()
            .filter(|r| r.key_name.is_empty())
            .map(|r| r.cost.micros())
            .sum();
        assert_eq!(others, 10 + 1 + 11 + 12, "k0 (both days), k1, k2");
    }
}
