//! `GET /api/v1/organization/usage/completions` and `GET /api/v1/organization/costs`: usage
//! and spend in time buckets, in the shape of OpenAI's Usage and Costs APIs, so that tools
//! written for those read ours. A "project" is a workspace, an API key id is a key's public
//! id (`key_…`). Daily buckets come from the rollups (exact whatever retention removed);
//! hourly and per-minute ones from request rows (so within `usage_retention_days`).
//!
//! Pages are runs of consecutive buckets: `limit` buckets from `start_time` (aligned down to
//! the bucket width), every bucket present even when empty, as OpenAI does; `next_page` is
//! the start of the next run. Buckets are whole: the one holding `end_time` counts to its end
//! (a daily rollup cannot be cut within its day).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::auth::{authenticate, Intent};
use super::store_error;
use crate::domain::public_id::KeyPublicId;
use crate::domain::time_util;
use crate::gateway::error::ApiError;
use crate::state::AppState;
use crate::store::usage::{BucketQuery, BucketRow};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// The most ids or models one filter may list (each is a bound value of the query).
const MAX_LISTED: usize = 100;

/// A bucket width and its default and largest `limit` (OpenAI's).
fn width(s: &str) -> Option<(i64, u32, u32)> {
    match s {
        "1m" => Some((MINUTE, 60, 1440)),
        "1h" => Some((HOUR, 24, 168)),
        "1d" => Some((DAY, 7, 31)),
        _ => None,
    }
}

/// The query, repeated parameters kept (`group_by=model&group_by=api_key_id`, also written
/// `group_by[]=…` or comma-separated).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Self {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn list(&self, name: &str) -> Vec<String> {
        let bracketed = format!("{name}[]");
        self.0
            .iter()
            .filter(|(k, _)| *k == name || *k == bracketed)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// What both endpoints parse: the period, its buckets, the page.
struct Period {
    width_ms: i64,
    /// The first bucket of this page and the end of the whole period.
    from_ms: i64,
    end_ms: i64,
    limit: u32,
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, message)
}

fn unix_seconds(p: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match p.one(name) {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|v| (0..=253_402_300_799).contains(v))
            .map(|v| Some(v * 1000))
            .ok_or_else(|| bad(name, format!("`{name}` must be unix seconds."))),
    }
}

fn period(p: &Params, widths: &[&str]) -> Result<Period, ApiError> {
    let raw_width = p.one("bucket_width").unwrap_or("1d");
    let (width_ms, default_limit, max_limit) = width(raw_width)
        .filter(|_| widths.contains(&raw_width))
        .ok_or_else(|| {
            bad(
                "bucket_width",
                format!("`bucket_width` must be one of {}.", widths.join(", ")),
            )
        })?;
    let start = unix_seconds(p, "start_time")?
        .ok_or_else(|| bad("start_time", "`start_time` is required (unix seconds)."))?;
    let end = unix_seconds(p, "end_time")?.unwrap_or_else(time_util::now_ms);
    if end <= start {
        return Err(bad("end_time", "`end_time` must be after `start_time`."));
    }
    let limit = match p.one("limit") {
        None => default_limit,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max_limit).contains(n))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!(
                        "`limit` must be from 1 to {max_limit} for `bucket_width` {raw_width}."
                    ),
                )
            })?,
    };
    let aligned = start.div_euclid(width_ms) * width_ms;
    let from_ms = match p.one("page") {
        None => aligned,
        Some(page) => page
            .strip_prefix("page_")
            .and_then(|n| n.parse::<i64>().ok())
            .map(|s| s * 1000)
            .filter(|t| *t >= aligned && *t < end && t.rem_euclid(width_ms) == 0)
            .ok_or_else(|| bad("page", "`page` must be a `next_page` of this query."))?,
    };
    Ok(Period {
        width_ms,
        from_ms,
        end_ms: end,
        limit,
    })
}

impl Period {
    /// The end of this page's last bucket.
    fn page_end(&self) -> i64 {
        (self.from_ms + self.width_ms * i64::from(self.limit)).min(
            // The bucket that holds `end_ms` is the last one.
            (self.end_ms - 1).div_euclid(self.width_ms) * self.width_ms + self.width_ms,
        )
    }

    fn next_page(&self) -> Option<String> {
        let next = self.page_end();
        (next < self.end_ms).then(|| format!("page_{}", next / 1000))
    }
}

#[derive(Serialize)]
struct Page<R: Serialize> {
    object: &'static str,
    data: Vec<Bucket<R>>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(Serialize)]
struct Bucket<R: Serialize> {
    object: &'static str,
    start_time: i64,
    end_time: i64,
    results: Vec<R>,
}

#[derive(Serialize)]
struct CompletionsResult {
    object: &'static str,
    input_tokens: i64,
    output_tokens: i64,
    input_cached_tokens: i64,
    input_audio_tokens: i64,
    output_audio_tokens: i64,
    num_model_requests: i64,
    project_id: Option<String>,
    user_id: Option<String>,
    api_key_id: Option<String>,
    model: Option<String>,
    batch: Option<bool>,
}

#[derive(Serialize)]
struct CostsResult {
    object: &'static str,
    amount: Amount,
    line_item: Option<String>,
    project_id: Option<String>,
}

/// OpenAI's amount: `value` is a JSON number. It is written from micro-credits (integers
/// throughout) as the nearest double, whose shortest form, which serde_json prints, is the
/// exact decimal for any amount below 2^53 micro-credits; `exact` repeats it as a string.
#[derive(Serialize)]
struct Amount {
    value: f64,
    currency: &'static str,
    exact: String,
}

/// Groups the API may split by, and what it names them.
const COMPLETION_GROUPS: [&str; 3] = ["project_id", "api_key_id", "model"];
const COST_GROUPS: [&str; 2] = ["project_id", "line_item"];

fn groups(p: &Params, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let groups = p.list("group_by");
    match groups.iter().find(|g| !allowed.contains(&g.as_str())) {
        Some(g) => Err(bad(
            "group_by",
            format!("`group_by` {g:?} is not one of {}.", allowed.join(", ")),
        )),
        None => Ok(groups),
    }
}

/// The page's buckets, each with the rows that fall in it.
fn buckets<R: Serialize>(
    period: &Period,
    rows: Vec<BucketRow>,
    result: impl Fn(BucketRow) -> R,
) -> Vec<Bucket<R>> {
    let mut out: Vec<Bucket<R>> = Vec::new();
    let mut start = period.from_ms;
    while start < period.page_end() {
        out.push(Bucket {
            object: "bucket",
            start_time: start / 1000,
            end_time: (start + period.width_ms) / 1000,
            results: Vec::new(),
        });
        start += period.width_ms;
    }
    for r in rows {
        let i = (r.bucket - period.from_ms).div_euclid(period.width_ms);
        if let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            b.results.push(result(r));
        }
    }
    out
}

/// The requested keys' internal ids; a public id this workspace does not have matches
/// nothing (it is not an error: a deleted workspace's key, a typo).
async fn key_ids(
    state: &AppState,
    m: &super::auth::Manager,
    p: &Params,
) -> Result<Option<Vec<i64>>, ApiError> {
    let wanted = p.list("api_key_ids");
    if wanted.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let keys = state
        .store
        .list_keys(m.account_id())
        .await
        .map_err(store_error("The key"))?;
    let ids: Vec<i64> = keys
        .iter()
        .filter(|k| {
            k.public_id
                .as_deref()
                .is_some_and(|id| wanted.iter().any(|w| w == id))
        })
        .map(|k| k.id.0)
        .collect();
    Ok((!ids.is_empty()).then_some(ids))
}

#[utoipa::path(get, path = "/api/v1/organization/usage/completions", tag = "management",
    security(("management_key" = [])),
    responses((status = 200, description = "A page of buckets, as OpenAI's Usage API"),
        (status = 400, body = crate::gateway::openapi::ErrorBody)))]
pub async fn completions(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Read).await?;
    let p = Params::parse(req.query_string());
    let period = period(&p, &["1m", "1h", "1d"])?;
    let groups = groups(&p, &COMPLETION_GROUPS)?;
    for name in ["api_key_ids", "models"] {
        if p.list(name).len() > MAX_LISTED {
            return Err(bad(
                name,
                format!("At most {MAX_LISTED} values in `{name}`."),
            ));
        }
    }
    for id in p.list("api_key_ids") {
        if KeyPublicId::parse(&id).is_none() {
            return Err(bad(
                "api_key_ids",
                format!("{id:?} is not an API key id (key_…)."),
            ));
        }
    }
    let by = |g: &str| groups.iter().any(|x| x == g);
    let project = by("project_id").then(|| m.account_id().0.to_string());
    let rows = match key_ids(&state, &m, &p).await? {
        Some(key_ids) => {
            state.usage.settled().await;
            let q = BucketQuery {
                width_ms: period.width_ms,
                from_ms: period.from_ms,
                to_ms: period.page_end(),
                by_key: by("api_key_id"),
                by_model: by("model"),
                key_ids,
                models: p.list("models"),
            };
            state
                .store
                .usage_buckets(m.account_id(), &q)
                .await
                .map_err(store_error("Usage"))?
        }
        None => Vec::new(),
    };
    let data = buckets(&period, rows, |r| CompletionsResult {
        object: "organization.usage.completions.result",
        input_tokens: r.prompt_tokens,
        output_tokens: r.completion_tokens,
        input_cached_tokens: 0,
        input_audio_tokens: 0,
        output_audio_tokens: 0,
        num_model_requests: r.requests,
        project_id: project.clone(),
        user_id: None,
        api_key_id: r.key_public_id,
        model: r.model,
        batch: None,
    });
    Ok(page(&period, data))
}

/// The answer: this page's buckets, and where the next page starts.
fn page<R: Serialize>(period: &Period, data: Vec<Bucket<R>>) -> HttpResponse {
    let next_page = period.next_page();
    HttpResponse::Ok().json(Page {
        object: "page",
        data,
        has_more: next_page.is_some(),
        next_page,
    })
}

#[utoipa::path(get, path = "/api/v1/organization/costs", tag = "management",
    security(("management_key" = [])),
    responses((status = 200, description = "A page of daily buckets, as OpenAI's Costs API"),
        (status = 400, body = crate::gateway::openapi::ErrorBody)))]
pub async fn costs(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Read).await?;
    let p = Params::parse(req.query_string());
    let period = period(&p, &["1d"])?;
    let groups = groups(&p, &COST_GROUPS)?;
    let by = |g: &str| groups.iter().any(|x| x == g);
    let project = by("project_id").then(|| m.account_id().0.to_string());
    state.usage.settled().await;
    let q = BucketQuery {
        width_ms: period.width_ms,
        from_ms: period.from_ms,
        to_ms: period.page_end(),
        // A line item is a model: what was bought.
        by_model: by("line_item"),
        ..BucketQuery::default()
    };
    let rows = state
        .store
        .usage_buckets(m.account_id(), &q)
        .await
        .map_err(store_error("Costs"))?;
    let data = buckets(&period, rows, |r| {
        let credits = r.cost;
        CostsResult {
            object: "organization.costs.result",
            amount: Amount {
                value: credits.micros() as f64 / 1e6,
                currency: "credits",
                exact: credits.exact(),
            },
            line_item: r.model,
            project_id: project.clone(),
        }
    });
    Ok(page(&period, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_as_their_exact_decimal() {
        for micros in [
            0_i64,
            1,
            6_000,
            1_234_567,
            999_999_999_999,
            4_503_599_627_370_495,
        ] {
            let printed = serde_json::to_string(&(micros as f64 / 1e6)).unwrap();
            let exact: f64 = crate::domain::Credits::from_micros(micros)
                .exact()
                .parse()
                .unwrap();
            assert_eq!(printed.parse::<f64>().unwrap(), exact, "{micros}");
            let decimals = printed.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 6, "{micros}: {printed}");
        }
    }

    #[test]
    fn pages_cover_the_period_in_runs_of_limit_buckets() {
        let p = Period {
            width_ms: DAY,
            from_ms: 0,
            end_ms: 10 * DAY + 1,
            limit: 7,
        };
        assert_eq!(p.page_end(), 7 * DAY);
        assert_eq!(p.next_page().as_deref(), Some("page_604800"));
        let last = Period {
            from_ms: 7 * DAY,
            ..p
        };
        assert_eq!(
            last.page_end(),
            11 * DAY,
            "the bucket holding the end is the last"
        );
        assert_eq!(last.next_page(), None);
    }
}
