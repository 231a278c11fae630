//! Usage in time buckets for the OpenAI-shaped usage and costs API
//! (`gateway::management::org_usage`): daily buckets from the rollups, hourly and
//! per-minute ones from request rows (a bounded number of buckets, within retention).

use sqlx::FromRow;

use super::{Bind, DAY_MS};
use crate::domain::ids::WorkspaceId;
use crate::domain::Credits;
use crate::store::{on_read, Result, Store};

/// What buckets are split by, and which keys and models they count.
#[derive(Debug, Clone, Default)]
pub struct BucketQuery {
    /// Bucket width in ms: a day, an hour or a minute.
    pub width_ms: i64,
    /// `[from_ms, to_ms)`, aligned to `width_ms`.
    pub from_ms: i64,
    pub to_ms: i64,
    pub by_key: bool,
    pub by_model: bool,
    /// Only these keys (internal ids) / models; empty: all.
    pub key_ids: Vec<i64>,
    pub models: Vec<String>,
}

/// One group's sums in one bucket. `requests` counts served requests (model requests);
/// refusals and failures are not.
#[derive(Debug, Clone, FromRow)]
pub struct BucketRow {
    /// The bucket's start, unix ms.
    pub bucket: i64,
    pub key_public_id: Option<String>,
    pub model: Option<String>,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: Credits,
}

impl Store {
    /// Sums per bucket (and key, model) over the query's period, in bucket order. Daily
    /// buckets read the narrowest rollup with the needed columns; narrower buckets read
    /// request rows by time (`usage_account_time`).
    pub async fn usage_buckets(
        &self,
        account_id: WorkspaceId,
        q: &BucketQuery,
    ) -> Result<Vec<BucketRow>> {
        let daily = q.width_ms == DAY_MS;
        let keyed = q.by_key || !q.key_ids.is_empty();
        let modeled = q.by_model || !q.models.is_empty();
        let (table, bucket, served, model_col) = if daily {
            let table = match (keyed, modeled) {
                (true, true) => "usage_daily",
                (true, false) => "usage_daily_keys",
                (false, _) => "usage_daily_workspace",
            };
            (
                table.to_owned(),
                format!("u.day * {DAY_MS}"),
                "u.requests - u.errors",
                "nullif(u.model, '')",
            )
        } else {
            (
                "usage".to_owned(),
                format!("(u.started_at / {w}) * {w}", w = q.width_ms),
                "case when u.status = 'ok' then 1 else 0 end",
                "u.resolved_model",
            )
        };
        let mut binds: Vec<Bind<'_>> = vec![Bind::Int(account_id.0)];
        let mut w = String::from(" where u.account_id = $1");
        if daily {
            binds.push(Bind::Int(q.from_ms / DAY_MS));
            binds.push(Bind::Int(q.to_ms / DAY_MS));
            w.push_str(" and u.day >= $2 and u.day < $3");
        } else {
            binds.push(Bind::Int(q.from_ms));
            binds.push(Bind::Int(q.to_ms));
            w.push_str(" and u.started_at >= $2 and u.started_at < $3");
        }
        any_of(
            &mut w,
            &mut binds,
            "u.key_id",
            q.key_ids.iter().map(|id| Bind::Int(*id)).collect(),
        );
        let model_expr = if daily {
            "u.model"
        } else {
            "coalesce(u.resolved_model, '')"
        };
        any_of(
            &mut w,
            &mut binds,
            model_expr,
            q.models.iter().map(|m| Bind::Text(m)).collect(),
        );
        // Group and order by the select list's positions: 1 bucket, 2 key, 3 model.
        let mut group = vec![bucket.clone()];
        let mut order = vec!["1"];
        let key_col = if q.by_key {
            group.push("k.public_id".into());
            order.push("2");
            "k.public_id"
        } else {
            "cast(null as text)"
        };
        let model_sel = if q.by_model {
            group.push(model_col.into());
            order.push("3");
            model_col
        } else {
            "cast(null as text)"
        };
        let join = if q.by_key {
            " left join api_keys k on k.id = u.key_id"
        } else {
            ""
        };
        let sql = format!(
            "select {bucket} as bucket, {key_col} as key_public_id, {model_sel} as model, \
               cast(coalesce(sum({served}), 0) as bigint) as requests, \
               cast(coalesce(sum(u.prompt_tokens), 0) as bigint) as prompt_tokens, \
               cast(coalesce(sum(u.completion_tokens), 0) as bigint) as completion_tokens, \
               cast(coalesce(sum(u.cost), 0) as bigint) as cost \
             from {table} u{join}{w} group by {} order by {}",
            group.join(", "),
            order.join(", "),
        );
        Ok(
            on_read!(self, pool => bind_all!(sqlx::query_as::<_, BucketRow>(&sql), &binds).fetch_all(pool).await?),
        )
    }
}

/// ` and <col> in ($n, …)` for `values`, bound in order; nothing when there are none.
fn any_of<'a>(w: &mut String, binds: &mut Vec<Bind<'a>>, col: &str, values: Vec<Bind<'a>>) {
    if values.is_empty() {
        return;
    }
    let mut marks = Vec::new();
    for v in values {
        binds.push(v);
        marks.push(format!("${}", binds.len()));
    }
    w.push_str(&format!(" and {col} in ({})", marks.join(", ")));
}
