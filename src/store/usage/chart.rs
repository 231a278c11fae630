//! The Usage chart's series: spend per day of the period's top keys and the rest, from
//! the rollups.

use std::collections::HashMap;

use super::filter::{filter_sql, rollup_filter_sql_in, Rollup};
use super::{DailySpend, UsageFilter, DAY_MS};
use crate::domain::ids::WorkspaceId;
use crate::domain::Credits;
use crate::store::{on_read, Result, Store};

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

impl Store {
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
