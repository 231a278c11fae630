//! A usage filter as SQL: the `where` clause and its binds, over raw rows or over the daily
//! rollups when they can answer it exactly.

use super::{UsageStatus, DAY_MS};
use crate::domain::ids::{KeyId, WorkspaceId};

impl UsageFilter {
    /// The `like` pattern matching names that contain `text`, case aside (ASCII on SQLite):
    /// `%`, `_` and the escape character itself match only themselves.
    pub fn name_contains(text: &str) -> String {
        let mut p = String::with_capacity(text.len() + 2);
        p.push('%');
        for c in text.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '!') {
                p.push('!');
            }
            p.push(c);
        }
        p.push('%');
        p
    }
}

/// Filters of the Usage pages, already validated. All of them combine (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Exactly this key name (as recorded on the rows).
    pub key_name: Option<String>,
    /// A `like` pattern (see [`UsageFilter::name_contains`]): key names containing a text,
    /// whatever its case, revoked keys' and earlier names included.
    pub key_name_like: Option<String>,
    /// The key itself, under every name it had (links from the Keys pages).
    pub key_id: Option<KeyId>,
    /// Inclusive start, unix ms.
    pub from_ms: Option<i64>,
    /// Exclusive end, unix ms.
    pub to_ms: Option<i64>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    pub status: Option<UsageStatus>,
    /// One reason (`error_code`), from the status filter's choices.
    pub error_code: Option<String>,
}

/// A bind value for SQL assembled at run time.
pub(crate) enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// ` and <cond> $n`, or `cond` with `$n` in place of its `{}`.
fn condition(cond: &str, n: usize) -> String {
    if cond.contains("{}") {
        format!(" and {}", cond.replace("{}", &format!("${n}")))
    } else {
        format!(" and {cond} ${n}")
    }
}

/// `where` clause and binds for a filter over raw rows; placeholders numbered from `$1`.
pub(crate) fn filter_sql<'a>(
    account_id: WorkspaceId,
    f: &'a UsageFilter,
) -> (String, Vec<Bind<'a>>) {
    let mut sql = String::from(" where account_id = $1");
    let mut binds = vec![Bind::Int(account_id.0)];
    let mut add = |cond: &str, b: Bind<'a>| {
        binds.push(b);
        sql.push_str(&condition(cond, binds.len()));
    };
    if let Some(t) = f.from_ms {
        add("started_at >=", Bind::Int(t));
    }
    if let Some(t) = f.to_ms {
        add("started_at <", Bind::Int(t));
    }
    add_dimension_filters(f, "coalesce(resolved_model, '')", &mut add);
    (sql, binds)
}

/// The three daily rollups, narrowest first: which one answers a filter is decided by what
/// it filters on ([`Rollup::for_filter`]), so that a view reads about as many rollup rows as
/// its answer has days × groups, never one row per key when it filters by no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rollup {
    /// `usage_daily_workspace`: every dimension but the key.
    Workspace,
    /// `usage_daily_keys`: the key (id and name as recorded) only.
    Keys,
    /// `usage_daily`: the key and every other dimension.
    Daily,
}

impl UsageFilter {
    /// Whether it filters by a key (id, name or part of a name).
    pub fn has_key(&self) -> bool {
        self.key_id.is_some() || self.key_name.is_some() || self.key_name_like.is_some()
    }

    /// Whether it filters by anything but the key and the dates.
    pub fn has_dimensions(&self) -> bool {
        self.model.is_some()
            || self.provider.is_some()
            || self.region.is_some()
            || self.status.is_some()
            || self.error_code.is_some()
    }
}

impl Rollup {
    pub(crate) fn for_filter(f: &UsageFilter) -> Rollup {
        match (f.has_key(), f.has_dimensions()) {
            (false, _) => Rollup::Workspace,
            (true, false) => Rollup::Keys,
            (true, true) => Rollup::Daily,
        }
    }

    pub(crate) fn table(self) -> &'static str {
        match self {
            Rollup::Workspace => "usage_daily_workspace",
            Rollup::Keys => "usage_daily_keys",
            Rollup::Daily => "usage_daily",
        }
    }
}

/// `from … where …` and binds for the same filter over the rollup that answers it
/// ([`Rollup::for_filter`]), when a rollup can answer it exactly: every filter has a rollup
/// column, so only a date bound that is not a whole UTC day (never the case from the Usage
/// page's date inputs) needs raw rows.
pub(crate) fn rollup_filter_sql<'a>(
    account_id: WorkspaceId,
    f: &'a UsageFilter,
) -> Option<(String, Vec<Bind<'a>>)> {
    rollup_filter_sql_in(account_id, f, Rollup::for_filter(f))
}

/// As [`rollup_filter_sql`], over `rollup`, which must have a column for each of the
/// filter's dimensions (any that [`Rollup::for_filter`] allows, or a wider one).
pub(crate) fn rollup_filter_sql_in<'a>(
    account_id: WorkspaceId,
    f: &'a UsageFilter,
    rollup: Rollup,
) -> Option<(String, Vec<Bind<'a>>)> {
    let day_of = |ms: Option<i64>| match ms {
        None => Some(None),
        Some(t) if t.rem_euclid(DAY_MS) == 0 => Some(Some(t.div_euclid(DAY_MS))),
        Some(_) => None,
    };
    let from_day = day_of(f.from_ms)?;
    let to_day = day_of(f.to_ms)?;
    let mut sql = format!(" from {} where account_id = $1", rollup.table());
    let mut binds = vec![Bind::Int(account_id.0)];
    let mut add = |cond: &str, b: Bind<'a>| {
        binds.push(b);
        sql.push_str(&condition(cond, binds.len()));
    };
    if let Some(d) = from_day {
        add("day >=", Bind::Int(d));
    }
    if let Some(d) = to_day {
        add("day <", Bind::Int(d));
    }
    add_dimension_filters(f, "model", &mut add);
    Some((sql, binds))
}

/// The filters raw rows and rollups share (all but the dates); `model` names the column that
/// holds the model each side filters on.
fn add_dimension_filters<'a>(
    f: &'a UsageFilter,
    model: &str,
    add: &mut impl FnMut(&str, Bind<'a>),
) {
    if let Some(k) = &f.key_name {
        add("key_name =", Bind::Text(k));
    }
    if let Some(p) = &f.key_name_like {
        add("lower(key_name) like {} escape '!'", Bind::Text(p));
    }
    if let Some(id) = f.key_id {
        add("key_id =", Bind::Int(id.0));
    }
    if let Some(m) = &f.model {
        add(&format!("{model} ="), Bind::Text(m));
    }
    if let Some(p) = &f.provider {
        add("provider =", Bind::Text(p));
    }
    if let Some(r) = &f.region {
        add("region =", Bind::Text(r));
    }
    if let Some(s) = f.status {
        add("status =", Bind::Text(s.as_str()));
    }
    if let Some(c) = &f.error_code {
        add("error_code =", Bind::Text(c));
    }
}
