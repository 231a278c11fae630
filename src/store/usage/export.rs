//! Reads for the CSV export: pages of rows whose cells the database joins into one value,
//! streamed page by page.

use crate::domain::ids::WorkspaceId;
use sqlx::FromRow;

use super::{UsageFilter, UsageRow, EXPORT_PAGE, USAGE_COLUMNS};
use crate::store::{on_read, Result, Store};

impl Store {
    /// One page of export rows, newest first, strictly older than `before` (a row's
    /// `(started_at, id)`): the filter and keyset of [`Store::list_usage`], each row's cells
    /// joined by the database into one text value (see [`ExportRow`]).
    pub async fn export_usage_page(
        &self,
        account_id: WorkspaceId,
        f: &UsageFilter,
        before: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<ExportRow>> {
        let seek = match before {
            Some((t, id)) => super::Seek::Before(t, id),
            None => super::Seek::First,
        };
        self.export_page(account_id, f, seek, limit).await
    }

    /// A page of export rows from `seek` (see [`Store::export_usage_page`]).
    async fn export_page(
        &self,
        account_id: WorkspaceId,
        f: &UsageFilter,
        seek: super::Seek,
        limit: i64,
    ) -> Result<Vec<ExportRow>> {
        let joined = EXPORT_CELLS.join(&format!(" || '{EXPORT_SEP}' || "));
        let columns = format!("id, started_at, completed_at, {joined} as cells");
        let mut rows: Vec<ExportRow> = self
            .usage_page(account_id, f, seek, limit, &columns)
            .await?;
        // A cell holding the separator itself (only client-sent model names can): that row
        // is read again column by column.
        for r in rows.iter_mut().filter(|r| r.cells().is_none()) {
            let sql =
                format!("select {USAGE_COLUMNS} from usage where id = $1 and account_id = $2");
            let row = on_read!(self, pool => {
                sqlx::query_as::<_, UsageRow>(&sql).bind(r.id).bind(account_id).fetch_one(pool).await?
            });
            let secret = match row.secret_last4.as_deref() {
                Some(last4) => self.secret_display(account_id, row.key_id, last4).await?,
                None => None,
            };
            let public_id: Option<String> = on_read!(self, pool => {
                sqlx::query_scalar("select public_id from api_keys where id = $1 and account_id = $2")
                    .bind(row.key_id)
                    .bind(account_id)
                    .fetch_optional(pool)
                    .await?
            });
            r.full = Some((
                row,
                secret.unwrap_or_default(),
                public_id.unwrap_or_default(),
            ));
        }
        Ok(rows)
    }

    /// Streams every row matching the filter, newest first, in pages of [`EXPORT_PAGE`]
    /// rows, for CSV export: memory is two pages whatever the total.
    pub fn stream_usage(
        &self,
        account_id: WorkspaceId,
        f: UsageFilter,
    ) -> futures_util::stream::BoxStream<'static, Result<Vec<ExportRow>>> {
        let store = self.clone();
        crate::store::pages::keyset_pages(move |before: Option<(i64, i64)>| {
            let store = store.clone();
            let f = f.clone();
            async move {
                let rows = store
                    .export_usage_page(account_id, &f, before, EXPORT_PAGE)
                    .await?;
                let next = (rows.len() as i64 == EXPORT_PAGE)
                    .then(|| rows.last().map(|r| (r.started_at, r.id)))
                    .flatten();
                Ok((rows, next))
            }
        })
    }
}

impl Store {
    /// Every row of a period (`from_ms..to_ms`, by start), oldest first, in pages of
    /// [`EXPORT_PAGE`], starting strictly after the row `after` (a generation id: where a
    /// cut transfer stopped). `NotFound` when `after` is not a row of this workspace.
    pub async fn stream_usage_period(
        &self,
        account_id: WorkspaceId,
        from_ms: i64,
        to_ms: i64,
        after: Option<&crate::domain::text::GenerationId>,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<Vec<ExportRow>>>> {
        let start = match after {
            Some(g) => {
                let row = self.usage_by_generation(account_id, g).await?;
                Some((row.started_at, row.id))
            }
            None => None,
        };
        let f = UsageFilter {
            from_ms: Some(from_ms),
            to_ms: Some(to_ms),
            ..UsageFilter::default()
        };
        let store = self.clone();
        let first = start;
        Ok(crate::store::pages::keyset_pages(
            move |cursor: Option<(i64, i64)>| {
                let (store, f) = (store.clone(), f.clone());
                async move {
                    let seek = super::Seek::OldestAfter(cursor.or(first));
                    let rows = store.export_page(account_id, &f, seek, EXPORT_PAGE).await?;
                    let next = (rows.len() as i64 == EXPORT_PAGE)
                        .then(|| rows.last().map(|r| (r.started_at, r.id)))
                        .flatten();
                    Ok((rows, next))
                }
            },
        ))
    }
}

/// Separator of [`ExportRow`]'s cells: the ASCII unit separator.
const EXPORT_SEP: char = '\u{1f}';

/// The cells of an export row after the times, in CSV column order (the dashboard's CSV
/// has all but the last), as SQL both backends accept (`text || bigint` converts the
/// number on both).
const EXPORT_CELLS: [&str; 18] = [
    "generation_id",
    "key_name",
    "requested_model",
    "coalesce(resolved_model, '')",
    "coalesce(provider, '')",
    "coalesce(region, '')",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "status",
    "http_status",
    "coalesce(error_code, '')",
    "coalesce(secret_last4, '')",
    // The serving secret as the dashboard shows it (prefix…last four; `Store::secret_display`).
    "coalesce((select s.token_prefix || '…' || s.token_last4 from key_secrets s \
      where s.key_id = usage.key_id and s.token_last4 = usage.secret_last4 \
      order by s.id desc limit 1), '')",
    // The key's public id (`key_…`, as the management API names it): the key under every
    // name it had.
    "coalesce((select k.public_id from api_keys k where k.id = usage.key_id), '')",
    // 1 when the answer was streamed (the period export's `streamed`).
    "streamed",
];

/// A usage row for CSV export: the cells joined into one text value by the database. One
/// value per row instead of nineteen to copy, send and free: on SQLite those per-value
/// copies dominated the export. Times stay numbers (the backends share no date format).
#[derive(Debug, Clone, FromRow)]
pub struct ExportRow {
    pub id: i64,
    pub started_at: i64,
    pub completed_at: i64,
    cells: String,
    /// The row read column by column, when a cell held the separator, and its secret's
    /// display.
    #[sqlx(skip)]
    full: Option<(UsageRow, String, String)>,
}

/// An export row's cells: generation id, key name, requested and resolved model, provider,
/// region, prompt, completion and total tokens, cost (micro-credits), latency, status, HTTP
/// status, error code, the serving secret's last four and its display (prefix…last four),
/// the key's public id, 1 when streamed. Absent values are empty.
pub type ExportCells<'a> = [std::borrow::Cow<'a, str>; 18];

impl ExportRow {
    pub fn cells(&self) -> Option<ExportCells<'_>> {
        use std::borrow::Cow;
        if let Some((r, secret, public_id)) = &self.full {
            let o = |s: &Option<String>| Cow::Owned(s.clone().unwrap_or_default());
            let n = |n: i64| Cow::Owned(n.to_string());
            return Some([
                Cow::Owned(r.generation_id.clone()),
                Cow::Owned(r.key_name.clone()),
                Cow::Owned(r.requested_model.clone()),
                o(&r.resolved_model),
                o(&r.provider),
                o(&r.region),
                n(r.prompt_tokens),
                n(r.completion_tokens),
                n(r.total_tokens),
                n(r.cost.micros()),
                n(r.latency_ms),
                Cow::Owned(r.status.clone()),
                n(r.http_status),
                o(&r.error_code),
                o(&r.secret_last4),
                Cow::Owned(secret.clone()),
                Cow::Owned(public_id.clone()),
                n(r.streamed),
            ]);
        }
        let mut it = self.cells.split(EXPORT_SEP).map(Cow::Borrowed);
        let cells: ExportCells<'_> = std::array::from_fn(|_| it.next().unwrap_or_default());
        (self.cells.matches(EXPORT_SEP).count() == EXPORT_CELLS.len() - 1).then_some(cells)
    }
}
