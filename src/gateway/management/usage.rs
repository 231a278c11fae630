//! `GET /api/v1/usage`: usage rows with the Usage page's filters, newest first, keyset
//! paginated by generation id.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{authenticate, Intent};
use super::{parse_limit, store_error};
use crate::domain::text::GenerationId;
use crate::domain::time_util;
use crate::gateway::error::ApiError;
use crate::service::usage_filter::parse_filter;
use crate::state::AppState;
use crate::store::usage::UsageRow;

/// The Usage page's filters (same names, same rules), and the page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read through the query map: these fields document the parameters.
pub struct UsageQuery {
    /// Key name at the time of the request.
    key: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC).
    from: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC).
    to: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    region: Option<String>,
    /// `ok`, `client_error`, `upstream_error`, or one error code.
    status: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<String>,
}

const FILTERS: [&str; 7] = ["key", "from", "to", "model", "provider", "region", "status"];

/// One usage row (what `GET /api/v1/generation/{id}` shows).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageObject {
    pub id: String,
    pub key_name: String,
    pub requested_model: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Credits, a decimal string.
    pub cost: String,
    pub status: String,
    pub http_status: i64,
    pub error_code: Option<String>,
    pub streamed: bool,
    pub latency_ms: i64,
    pub started_at: String,
    pub completed_at: String,
}

impl From<&UsageRow> for UsageObject {
    fn from(r: &UsageRow) -> Self {
        UsageObject {
            id: r.generation_id.clone(),
            key_name: r.key_name.clone(),
            requested_model: r.requested_model.clone(),
            model: r.resolved_model.clone(),
            provider: r.provider.clone(),
            region: r.region.clone(),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            total_tokens: r.total_tokens,
            cost: r.cost.exact(),
            status: r.status.clone(),
            http_status: r.http_status,
            error_code: r.error_code.clone(),
            streamed: r.streamed != 0,
            latency_ms: r.latency_ms,
            started_at: time_util::format_rfc3339(r.started_at),
            completed_at: time_util::format_rfc3339(r.completed_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageList {
    pub data: Vec<UsageObject>,
    pub next_cursor: Option<String>,
}

/// The dashboard's filter parse, which reports a bad value and ignores it; here a bad value
/// is a 400 naming it (each filter is checked alone to know which).
fn checked_filter(
    q: &HashMap<String, String>,
) -> Result<crate::store::usage::UsageFilter, ApiError> {
    for name in FILTERS {
        if let Some(v) = q.get(name) {
            let alone = HashMap::from([(name.to_owned(), v.clone())]);
            if let Some(e) = parse_filter(&alone).3.into_iter().next() {
                return Err(ApiError::invalid_param(name, e));
            }
        }
    }
    let (_, filter, _, errors) = parse_filter(q);
    match errors.into_iter().next() {
        Some(e) => Err(ApiError::invalid_param("from", e)),
        None => Ok(filter),
    }
}

#[utoipa::path(get, path = "/api/v1/usage", tag = "management", params(UsageQuery),
    security(("management_key" = [])),
    responses((status = 200, body = UsageList), (status = 400, body = crate::gateway::openapi::ErrorBody)))]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Read).await?;
    let filter = checked_filter(&query)?;
    let limit = parse_limit(query.get("limit").map(String::as_str))?;
    state.usage.settled().await;
    let store = &state.store;
    let before = match query.get("cursor").map(String::as_str) {
        None | Some("") => None,
        Some(c) => {
            let bad = || {
                ApiError::invalid_param("cursor", "`cursor` must be a `next_cursor` from a page.")
            };
            let id = GenerationId::parse(c).ok_or_else(bad)?;
            let row = store
                .usage_by_generation(m.account_id(), &id)
                .await
                .map_err(|e| match e {
                    crate::store::StoreError::NotFound => bad(),
                    e => store_error("The usage row")(e),
                })?;
            Some(crate::store::usage::RowCursor::of(&row))
        }
    };
    let mut rows = store
        .list_usage(m.account_id(), &filter, before, i64::from(limit) + 1)
        .await
        .map_err(store_error("The usage row"))?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(HttpResponse::Ok().json(UsageList {
        next_cursor: if more {
            rows.last().map(|r| r.generation_id.clone())
        } else {
            None
        },
        data: rows.iter().map(UsageObject::from).collect(),
    }))
}
