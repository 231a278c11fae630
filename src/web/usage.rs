//! Usage pages: history by key name with filters, totals, a daily chart (server-side SVG),
//! keyset pagination, CSV export and a detail page per generation.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::keys::html;
use super::usage_chart::{build_chart, Chart, Texture};
use super::{Dashboard, Layout};
use crate::domain::reasons::{self, StatusChoice};
use crate::domain::text::GenerationId;
use crate::domain::{time_util, Credits, ErrorCode, KeyId, WorkspaceId};
pub use crate::service::usage_filter::{parse_filter, FilterInput};
use crate::state::AppState;
use crate::store::keys::KeyStatus;
use crate::store::usage::{RowCursor, UsageFilter, UsageRow, UsageTotals};

pub const PAGE_SIZE: i64 = 50;
const CHART_DAYS_DEFAULT: i64 = 30;
const CHART_DAYS_MAX: i64 = 366;

pub struct UsageView {
    pub generation_id: String,
    pub time: String,
    /// `3 minutes ago`, with the exact time for `<time>`.
    pub when: super::when::When,
    pub key_name: String,
    pub key_revoked: bool,
    /// The key's name today, when it was renamed since this request ("now called …").
    pub key_now: Option<String>,
    pub requested_model: String,
    pub resolved_model: String,
    pub provider: String,
    pub region: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost: String,
    pub latency_ms: i64,
    pub status: String,
    pub status_class: &'static str,
    /// `429 · Daily limit reached`: the HTTP status and the plain reason (`reasons`).
    pub status_line: String,
    /// The catalogue model the request resolved to, or `—`.
    pub model: String,
    /// What the client asked for, whenever it differs from `model` (`lowrouter/auto`, or
    /// a model that was refused): the Usage list and detail page show it as "asked: …";
    /// Home shows no client text.
    pub asked: Option<String>,
    /// The reason's code, when the row has one.
    pub code: Option<String>,
    pub http_status: i64,
    pub error_code: String,
    pub streamed: bool,
    pub started: String,
    pub completed: String,
    /// The secret that served it (`…x9Qz`), when recorded.
    pub secret: Option<String>,
}

/// The account's keys as usage rows refer to them: by id, their name today and whether they
/// are revoked (rows keep the name a request was made under).
pub struct KeyNames(HashMap<KeyId, (String, bool)>);

impl KeyNames {
    /// The key filter's suggestions: every key's name, deleted keys' too, sorted, once
    /// each (an earlier name of a renamed key can still be typed: the filter matches the
    /// names rows were recorded under).
    pub fn suggestions(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.values().map(|(n, _)| n.clone()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    pub fn new(keys: &[crate::store::keys::KeyRow]) -> Self {
        KeyNames(
            keys.iter()
                .map(|k| (k.id, (k.name.clone(), k.status == KeyStatus::Revoked)))
                .collect(),
        )
    }

    pub async fn of(state: &AppState, account_id: WorkspaceId) -> WebResult<Self> {
        Ok(KeyNames::new(&state.store.list_keys(account_id).await?))
    }
}

impl UsageView {
    pub fn new(r: &UsageRow, keys: &KeyNames) -> Self {
        let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "—".into());
        let (now_name, revoked) = keys
            .0
            .get(&r.key_id)
            .map_or((None, false), |(n, revoked)| (Some(n), *revoked));
        UsageView {
            generation_id: r.generation_id.clone(),
            time: time_util::format_second(r.started_at),
            when: super::when::When::new(time_util::now_ms(), r.started_at),
            key_name: r.key_name.clone(),
            key_revoked: revoked,
            key_now: now_name.filter(|n| **n != r.key_name).cloned(),
            requested_model: r.requested_model.clone(),
            resolved_model: dash(&r.resolved_model),
            provider: dash(&r.provider),
            region: dash(&r.region),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            total_tokens: r.total_tokens,
            cost: r.cost.display(),
            latency_ms: r.latency_ms,
            status: r.status.clone(),
            status_class: match (r.status.as_str(), r.error_code.is_some()) {
                ("ok", false) => "ok",
                ("ok", true) => "warn",
                _ => "bad",
            },
            status_line: reasons::status_line(r.http_status, r.error_code.as_deref()),
            model: dash(&r.resolved_model),
            asked: (r.resolved_model.as_ref() != Some(&r.requested_model))
                .then(|| r.requested_model.clone()),
            code: r.error_code.clone(),
            http_status: r.http_status,
            error_code: dash(&r.error_code),
            secret: r.secret_last4.as_ref().map(|l| format!("…{l}")),
            streamed: r.streamed != 0,
            started: time_util::format_second(r.started_at),
            completed: time_util::format_second(r.completed_at),
        }
    }
}

/// Views of a page of rows; their costs share one number of decimals, so that the cost
/// column's decimal points line up.
pub fn views(rows: &[UsageRow], keys: &KeyNames) -> Vec<UsageView> {
    let costs: Vec<Credits> = rows.iter().map(|r| r.cost).collect();
    rows.iter()
        .zip(Credits::display_column(&costs))
        .map(|(r, cost)| UsageView {
            cost,
            ..UsageView::new(r, keys)
        })
        .collect()
}

pub struct TotalsView {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: String,
    pub errors: i64,
}

impl From<UsageTotals> for TotalsView {
    fn from(t: UsageTotals) -> Self {
        TotalsView {
            requests: t.requests,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cost: t.cost.display(),
            errors: t.errors,
        }
    }
}

/// The choices of a filter's select, with the current value kept when it is not one of them
/// (a provider or region since removed from the catalogue still filters its old rows).
fn with_current(choices: impl Iterator<Item = String>, current: &str) -> Vec<String> {
    let mut out: Vec<String> = choices.collect();
    if !current.is_empty() && !out.iter().any(|c| c == current) {
        out.push(current.to_owned());
    }
    out
}

#[derive(Template)]
#[template(path = "usage.html")]
struct UsagePage {
    layout: Layout,
    input: FilterInput,
    errors: Vec<String>,
    rows: Vec<UsageView>,
    totals: TotalsView,
    chart: Chart,
    /// What the totals cover, said beside them (the chart says its own period).
    totals_period: String,
    key_names: Vec<String>,
    /// The catalogue's model ids, providers and regions: the filters offer them, so a typo
    /// cannot quietly match nothing.
    model_ids: Vec<String>,
    providers: Vec<String>,
    regions: Vec<String>,
    /// The current name of the key filtered by id.
    key_now: Option<String>,
    outcomes: &'static [StatusChoice],
    reasons: Vec<StatusChoice>,
    next_query: Option<String>,
    /// The page before this one (newer rows), when this is not the first.
    newer_query: Option<String>,
    first_query: Option<String>,
    csv_query: String,
    /// `Showing 50 of 78 requests`.
    showing: String,
    /// How far back the list of requests goes, beside the totals that go back further.
    retention: String,
    /// Said when the filter's dates start before the oldest requests still kept.
    retention_note: Option<String>,
}

/// What the Usage page says of retention (`usage_retention_days`): raw rows go, rollups
/// stay, so the list and the totals cover different periods once requests have gone.
fn retention_lines(days: u32, from_ms: Option<i64>, now: i64) -> (String, Option<String>) {
    if days == 0 {
        return (
            "Requests are kept until an operator removes them; totals and charts go back to \
             the first request."
                .into(),
            None,
        );
    }
    let line = format!(
        "Requests are kept for {days} days; totals and charts go back to the first request."
    );
    let kept_from = time_util::day_number(now - i64::from(days) * 86_400_000) + 1;
    let note = from_ms
        .filter(|f| time_util::day_number(*f) < kept_from)
        .map(|_| {
            format!(
                "This range starts before {}, the oldest day whose requests are kept: the list \
             below starts there, while the totals and the chart include the whole range.",
                time_util::format_date(kept_from * 86_400_000)
            )
        });
    (line, note)
}

/// The Usage page. Long on purpose: the reads run at once, then the page's fields are
/// filled in the template's order.
pub async fn list(
    state: web::Data<AppState>,
    user: Dashboard,
    query: web::Query<HashMap<String, String>>,
) -> WebResult<HttpResponse> {
    // "Find a request": a generation id goes straight to its page.
    if let Some(wanted) = query
        .get("generation")
        .map(|g| g.trim())
        .filter(|g| !g.is_empty())
    {
        return find_generation(&state, &user, wanted).await;
    }
    let (input, filter, before, errors) = parse_filter(&query);
    let store = &state.store;
    let (first_day, days) = chart_period(&filter);
    let mut chart_filter = filter.clone();
    chart_filter.from_ms = Some(first_day * 86_400_000);
    chart_filter.to_ms = Some((first_day + days) * 86_400_000);
    // Independent reads run at once (SQLite's read pool has several connections, each on
    // its own thread): the page costs the slowest of them, not their sum.
    let (totals, daily, keys) = futures_util::future::try_join3(
        async { Ok::<_, WebError>(store.usage_totals(user.workspace(), &filter).await?) },
        async { Ok(store.daily_spend(user.workspace(), &chart_filter).await?) },
        KeyNames::of(&state, user.workspace()),
    )
    .await?;
    // `after=<id>&at=<start>` (a "Newer" link): the page just newer than that row.
    let after = crate::service::usage_filter::cursor(&query, "after")
        .ok()
        .flatten()
        .filter(|_| before.is_none());
    let (rows, has_older, has_newer) =
        rows_page(&state, &user, &filter, totals.requests, before, after).await?;
    let rows = &rows[..];
    let (retention, retention_note) = retention_lines(
        state.settings.usage_retention_days,
        filter.from_ms,
        time_util::now_ms(),
    );
    let base = input.query();
    let with = |extra: String| {
        if base.is_empty() {
            extra
        } else {
            format!("{base}&{extra}")
        }
    };
    let page = UsagePage {
        next_query: (has_older && !rows.is_empty())
            .then(|| rows.last().map(|r| with(RowCursor::of(r).query("before"))))
            .flatten(),
        newer_query: (has_newer && !rows.is_empty())
            .then(|| rows.first().map(|r| with(RowCursor::of(r).query("after"))))
            .flatten(),
        first_query: (before.is_some() || after.is_some()).then(|| base.clone()),
        showing: format!(
            "Showing {} of {} request{}",
            rows.len(),
            totals.requests,
            if totals.requests == 1 { "" } else { "s" }
        ),
        csv_query: base.clone(),
        rows: views(rows, &keys),
        totals: totals.into(),
        chart: build_chart(&daily, first_day, days),
        totals_period: totals_period(&filter),
        key_names: keys.suggestions(),
        model_ids: state
            .catalogue
            .models
            .iter()
            .map(|m| m.id.clone())
            .collect(),
        providers: with_current(
            state.catalogue.providers.iter().map(|p| p.id.clone()),
            &input.provider,
        ),
        regions: with_current(state.catalogue.regions.iter().cloned(), &input.region),
        key_now: match filter.key_id {
            Some(id) => state
                .store
                .key(user.workspace(), id)
                .await
                .ok()
                .map(|k| k.name),
            None => None,
        },
        outcomes: &reasons::OUTCOMES,
        reasons: reasons::reason_choices().collect(),
        retention,
        retention_note,
        layout: user.layout("usage"),
        input,
        errors,
    };
    html(StatusCode::OK, page.render()?)
}

/// The page of the request `wanted` names, or Usage saying there is none in this workspace.
async fn find_generation(
    state: &AppState,
    user: &Dashboard,
    wanted: &str,
) -> WebResult<HttpResponse> {
    if let Some(id) = GenerationId::parse(wanted) {
        match state.store.usage_by_generation(user.workspace(), &id).await {
            Ok(_) => return Ok(super::see_other(&format!("/usage/{}", id.as_str()))),
            Err(crate::store::StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    user.session.set_info(
        "No request with that generation id in this workspace. It is the x-lowrouter-generation-id \
         header (and the `id` of a completion) of the request's answer, like gen-….",
    )?;
    Ok(super::see_other("/usage"))
}

/// One page of raw rows, newest first, and whether older and newer rows exist beyond it.
async fn rows_page(
    state: &AppState,
    user: &Dashboard,
    filter: &UsageFilter,
    total: i64,
    before: Option<RowCursor>,
    after: Option<RowCursor>,
) -> WebResult<(Vec<UsageRow>, bool, bool)> {
    let store = &state.store;
    // When the totals (from the rollup) say nothing matches, the page is known to be empty
    // without walking the raw rows looking for a match that is not there.
    let mut rows = match (total, after) {
        (0, _) => Vec::new(),
        (_, Some(a)) => {
            store
                .list_usage_after(user.workspace(), filter, a, PAGE_SIZE + 1)
                .await?
        }
        (_, None) => {
            store
                .list_usage(user.workspace(), filter, before, PAGE_SIZE + 1)
                .await?
        }
    };
    // One row beyond the page says there is more in the direction read: older rows after a
    // `before` page, newer ones before an `after` page (whose extra row is its newest).
    let beyond = rows.len() as i64 > PAGE_SIZE;
    match after {
        Some(_) if beyond => {
            rows.remove(0);
        }
        _ => rows.truncate(PAGE_SIZE as usize),
    }
    let (has_older, has_newer) = match after {
        Some(_) => (true, beyond),
        None => (beyond, before.is_some()),
    };
    Ok((rows, has_older, has_newer))
}

/// The totals cover the filter's dates, or all time.
fn totals_period(f: &UsageFilter) -> String {
    let day = |ms: i64| time_util::format_date(ms);
    match (f.from_ms, f.to_ms) {
        (None, None) => "All time".into(),
        (Some(from), None) => format!("Since {}", day(from)),
        (None, Some(to)) => format!("Until {}", day(to - 1)),
        (Some(from), Some(to)) => format!("{} to {}", day(from), day(to - 1)),
    }
}

/// The chart covers the filter's dates, or the last 30 days when it has none.
fn chart_period(f: &UsageFilter) -> (i64, i64) {
    let today = time_util::day_number(time_util::now_ms());
    let last = f.to_ms.map_or(today, |t| time_util::day_number(t - 1));
    let first = f
        .from_ms
        .map_or(last - CHART_DAYS_DEFAULT + 1, time_util::day_number);
    let days = (last - first + 1).clamp(1, CHART_DAYS_MAX);
    (last - days + 1, days)
}

#[derive(Template)]
#[template(path = "usage_detail.html")]
struct DetailPage {
    layout: Layout,
    row: UsageView,
    /// A refusal's meaning and what to do (`reasons::advice`).
    advice: Option<&'static str>,
    /// The key as it is now, when it still lives: its limits and spend, links to it and Edit.
    key: Option<super::key_view::KeyView>,
    /// A refusal for credits: the workspace's balance and what is held now.
    balance: Option<(String, String)>,
}

pub async fn detail(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
) -> WebResult<HttpResponse> {
    let id = GenerationId::parse(&path).ok_or(WebError::NotFound)?;
    let row = state
        .store
        .usage_by_generation(user.workspace(), &id)
        .await?;
    let keys = KeyNames::of(&state, user.workspace()).await?;
    let mut view = UsageView::new(&row, &keys);
    if let Some(last4) = row.secret_last4.as_deref() {
        let store = &state.store;
        if let Some(shown) = store
            .secret_display(user.workspace(), row.key_id, last4)
            .await?
        {
            view.secret = Some(shown);
        }
    }
    let code = row.error_code.as_deref().filter(|_| row.status != "ok");
    let key = match code {
        Some(_) => state.store.key(user.workspace(), row.key_id).await.ok(),
        None => None,
    };
    let now = crate::domain::time_util::now_ms();
    let page = DetailPage {
        advice: code.and_then(reasons::advice),
        key: key.map(|k| super::key_view::KeyView::new(&k, now)),
        balance: (code.and_then(ErrorCode::parse) == Some(ErrorCode::InsufficientCredits)).then(
            || {
                (
                    user.account.balance.display_places(2),
                    user.account.reserved.display_places(2),
                )
            },
        ),
        row: view,
        layout: user.layout("usage"),
    };
    html(StatusCode::OK, page.render()?)
}
