//! Pages of raw usage rows: keyset cursors, newest (or oldest) first by
//! `(started_at, id)`, one walk per key a name filter resolves to, and on PostgreSQL in
//! growing time windows. Shared by the Usage page, `GET /api/v1/usage` and the exports.

use super::filter::{filter_sql, Bind};
use super::{UsageFilter, UsageRow, DAY_MS, USAGE_COLUMNS};
use crate::domain::ids::WorkspaceId;
use crate::store::{on_read, Result, Store};

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
pub(super) enum Seek {
    First,
    Before(i64, i64),
    After(i64, i64),
    /// Oldest first, from strictly after a row (or from the start): the period export.
    OldestAfter(Option<(i64, i64)>),
}

impl Store {
    /// The `(started_at, id)` of a row of this workspace, for a cursor that names the row by
    /// id. None when there is no such row (another workspace's, or removed by retention).
    pub(super) async fn cursor_of(
        &self,
        account_id: WorkspaceId,
        id: i64,
    ) -> Result<Option<(i64, i64)>> {
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
    pub(super) async fn seek_before(
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
    pub(super) async fn usage_page<T>(
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
            crate::store::Engine::Postgres { .. } => &WINDOWS,
            crate::store::Engine::Sqlite { .. } => &[None],
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
}
