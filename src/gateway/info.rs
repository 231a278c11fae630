//! `GET /api/v1/models`, `/key`, `/credits`, `/generation/{id}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::auth::{authenticate, Authed};
use super::error::ApiError;
use super::holds::Outstanding;
use crate::catalogue::{Model, ModelKind, ReleaseDate};
use crate::domain::text::GenerationId;
use crate::domain::{time_util, Credits};
use crate::state::AppState;
use crate::store::keys::KeyRow;

fn ok(balance: Credits, body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("x-credit-balance", balance.exact()))
        .json(body)
}

fn exact(c: Option<i64>) -> Value {
    c.map_or(Value::Null, |m| {
        Value::String(Credits::from_micros(m).exact())
    })
}

/// Authenticates, then makes sure every request answered so far is in the database (see
/// `UsageWriter::settled`), reading the key again if that had to wait: these endpoints
/// report spend and balance. Unknown keys are refused before they can make the usage
/// applier write early.
async fn authenticate_settled(
    state: &AppState,
    req: &HttpRequest,
    now_ms: i64,
) -> Result<Authed, ApiError> {
    let authed = authenticate(&state.store, req.headers(), now_ms, &state.alerts)
        .await
        .map_err(|e| state.refusals.after_failed_auth(req, e))?;
    // PostgreSQL: this process's unused lease slices of the account go back first, so an
    // account at rest reports nothing reserved (other processes' slices show as reserved).
    let account = authed.key.key.account_id;
    let returned = state.ledger.return_account_leases(account).await;
    if state.usage.settled().await || returned {
        return authenticate(&state.store, req.headers(), now_ms, &state.alerts).await;
    }
    Ok(authed)
}

/// What the gateway forwards for a chat model (OpenRouter's `supported_parameters`; fields
/// billed outside token prices are refused: see `chat::request`).
const CHAT_PARAMETERS: [&str; 14] = [
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "tools",
    "tool_choice",
    "response_format",
    "stream_options",
];
const EMBEDDINGS_PARAMETERS: [&str; 2] = ["encoding_format", "dimensions"];

/// A model as this key sees it: only if the key may use it and a configured provider serves
/// it in a region the key may use (`None` otherwise).
fn model_json(state: &AppState, key: &KeyRow, m: &Model) -> Option<Value> {
    if !key.allows_model(&m.id) {
        return None;
    }
    let regions: Vec<&str> = state
        .catalogue
        .model_regions(m, |p| state.upstreams.is_usable(p))
        .into_iter()
        .filter(|r| key.region.as_deref().is_none_or(|k| k == *r))
        .collect();
    (!regions.is_empty()).then(|| {
        json!({
            "id": m.id, "object": "model",
            "created": m.created.map_or(0, ReleaseDate::unix),
            "owned_by": m.id.split('/').next().unwrap_or(""),
            "name": m.name,
            "description": m.description.as_deref().unwrap_or(&m.name),
            "context_length": m.context_length,
            "kind": m.kind.as_str(),
            // Ours (per million tokens) and OpenRouter's (per token, as strings), in credits.
            "pricing": {"input_per_million": m.input_price, "output_per_million": m.output_price,
                "unit": "credits",
                "prompt": m.input_price.per_million_as_per_unit(),
                "completion": m.output_price.per_million_as_per_unit()},
            "max_output_tokens": m.max_output_tokens,
            "supported_parameters": match m.kind {
                ModelKind::Chat => &CHAT_PARAMETERS[..],
                ModelKind::Embeddings => &EMBEDDINGS_PARAMETERS[..],
            },
            "regions": regions,
        })
    })
}

/// Holds in flight the key read does not include (SQLite's hold book; on PostgreSQL holds and
/// leased slices are in the rows already).
fn outstanding(state: &AppState, authed: &Authed, now_ms: i64) -> Outstanding {
    state.ledger.outstanding(&authed.key, now_ms)
}

/// Only what this key may use, in its region.
#[utoipa::path(get, path = "/api/v1/models", tag = "gateway", security(("api_key" = [])),
    responses((status = 200, description = "The models this key may use, with prices and regions: `{object: \"list\", data: [...]}`"), (status = 401, body = crate::gateway::openapi::ErrorBody)))]
pub async fn models(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let authed = authenticate_settled(&state, &req, time_util::now_ms()).await?;
    let data: Vec<Value> = state
        .catalogue
        .models
        .iter()
        .filter_map(|m| model_json(&state, &authed.key.key, m))
        .collect();
    Ok(ok(
        authed.available(),
        json!({"object": "list", "data": data}),
    ))
}

/// One model (`models.retrieve` in the SDKs): 404 unless `/models` would list it.
#[utoipa::path(get, path = "/api/v1/models/{id}", tag = "gateway", security(("api_key" = [])),
    params(("id" = String, Path, description = "A model id, e.g. `openai/gpt-4o`")),
    responses((status = 200, description = "One model, if `/models` lists it"), (status = 404, body = crate::gateway::openapi::ErrorBody)))]
pub async fn model(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let authed = authenticate_settled(&state, &req, time_util::now_ms()).await?;
    let found = state
        .catalogue
        .model(&path)
        .and_then(|m| model_json(&state, &authed.key.key, m));
    match found {
        Some(m) => Ok(ok(authed.available(), m)),
        None => Err(ApiError::model_not_found(&path)),
    }
}

#[utoipa::path(get, path = "/api/v1/key", tag = "gateway", security(("api_key" = [])),
    responses((status = 200, description = "This key: name, scoping, limits, spend and remaining (`{data: ...}`)"), (status = 401, body = crate::gateway::openapi::ErrorBody)))]
pub async fn key(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = time_util::now_ms();
    let authed = authenticate_settled(&state, &req, now).await?;
    let k = &authed.key.key;
    let held = outstanding(&state, &authed, now);
    // Spend includes what is held for requests in flight (and leased, on PostgreSQL).
    let today = k.spent_today(now).micros() + held.key_day;
    let month = k.spent_this_month(now).micros() + held.key_month;
    let available = (authed.available().micros() - held.account_extra).max(0);
    let remaining = |limit: Option<i64>, spent: i64| {
        let left = limit
            .map_or(available, |l| (l - spent).min(available))
            .max(0);
        Value::String(Credits::from_micros(left).exact())
    };
    let usage = state
        .store
        .key_spend_total(k.account_id, k.id)
        .await
        .map_err(store_failed)?;
    // OpenRouter has one limit per key: the one with less room left, daily before monthly.
    let (daily_limit, monthly_limit) = (
        k.daily_limit.map(Credits::micros),
        k.monthly_limit.map(Credits::micros),
    );
    let day_left = daily_limit.map(|l| (l - today).max(0));
    let month_left = monthly_limit.map(|l| (l - month).max(0));
    let (limit, limit_left, reset) = match (day_left, month_left) {
        (Some(d), Some(m)) if m < d => (monthly_limit, Some(m), Some("monthly")),
        (Some(d), _) => (daily_limit, Some(d), Some("daily")),
        (None, Some(m)) => (monthly_limit, Some(m), Some("monthly")),
        (None, None) => (None, None, None),
    };
    let number = |m: i64| Value::Number(Credits::from_micros(m).json_number());
    let body = json!({"data": {
        // OpenRouter's fields (numbers, in credits), beside ours (exact decimal strings).
        "label": k.masked(),
        "limit": limit.map(number),
        "limit_remaining": limit_left.map(|l| number(l.min(available))),
        "limit_reset": reset,
        "usage": number(usage + held.key_day.max(0)),
        "usage_daily": number(today),
        "usage_monthly": number(month),
        "is_free_tier": false,
        "name": k.name,
        "token": k.masked(),
        "models": k.models.iter().collect::<Vec<_>>(),
        "region": k.region,
        "daily_limit": exact(daily_limit),
        "monthly_limit": exact(monthly_limit),
        "expires_at": k.expires_at.map(time_util::format_rfc3339),
        "rpm_limit": k.rpm_limit,
        "concurrency_limit": k.concurrency_limit,
        "disable_after_days": k.disable_after_days,
        "spend_today": Credits::from_micros(today).exact(),
        "spend_this_month": Credits::from_micros(month).exact(),
        "remaining_today": remaining(daily_limit, today),
        "remaining_this_month": remaining(monthly_limit, month),
        "created_at": time_util::format_rfc3339(k.created_at),
    }});
    Ok(ok(Credits::from_micros(available), body))
}

/// `balance`: spendable now; `reserved`: set aside for requests in flight (their worst-case
/// cost) and, on PostgreSQL, slices leased by other gateway processes and not yet used.
#[utoipa::path(get, path = "/api/v1/credits", tag = "gateway", security(("api_key" = [])),
    responses((status = 200, description = "`{data: {balance, reserved}}`, decimal strings"), (status = 401, body = crate::gateway::openapi::ErrorBody)))]
pub async fn credits(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let now = time_util::now_ms();
    let authed = authenticate_settled(&state, &req, now).await?;
    let held = outstanding(&state, &authed, now);
    let balance = Credits::from_micros((authed.available().micros() - held.account_extra).max(0));
    let account = authed.key.key.account_id;
    let used = state
        .store
        .spend_since_day(account, 0)
        .await
        .map_err(store_failed)?;
    let reserved = authed.key.reserved.micros() + held.account_held;
    let number = |m: i64| Value::Number(Credits::from_micros(m).json_number());
    let body = json!({"data": {
        "balance": balance.exact(),
        "reserved": Credits::from_micros(reserved).exact(),
        // OpenRouter's fields: everything granted so far, and everything spent (settled).
        "total_credits": number(used + balance.micros() + reserved),
        "total_usage": number(used),
    }});
    Ok(ok(balance, body))
}

fn store_failed(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "read for a gateway report failed");
    ApiError::internal()
}

#[derive(serde::Deserialize)]
pub struct GenerationQuery {
    id: String,
}

/// OpenRouter's spelling: `/generation?id=…`.
#[utoipa::path(get, path = "/api/v1/generation", tag = "gateway", security(("api_key" = [])),
    params(("id" = String, Query, description = "`gen-…`")),
    responses((status = 200, description = "One usage row of this account"), (status = 404, body = crate::gateway::openapi::ErrorBody)))]
pub async fn generation_by_query(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = web::Query::<GenerationQuery>::from_query(req.query_string())
        .ok()
        .map(|q| q.into_inner().id);
    generation_reply(state, req, id.as_deref()).await
}

/// One usage row of this key's account.
#[utoipa::path(get, path = "/api/v1/generation/{id}", tag = "gateway", security(("api_key" = [])),
    params(("id" = String, Path, description = "`gen-…`")),
    responses((status = 200, description = "One usage row of this account"), (status = 404, body = crate::gateway::openapi::ErrorBody)))]
pub async fn generation(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    generation_reply(state, req, Some(&path)).await
}

async fn generation_reply(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let authed = authenticate_settled(&state, &req, time_util::now_ms()).await?;
    let Some(id) = id else {
        return Err(ApiError::invalid_request(
            "`id` (a generation id) is required.",
        ));
    };
    let Some(id) = GenerationId::parse(id) else {
        return Err(ApiError::not_found("The generation"));
    };
    let row = match state
        .store
        .usage_by_generation(authed.key.key.account_id, &id)
        .await
    {
        Ok(r) => r,
        Err(crate::store::StoreError::NotFound) => {
            return Err(ApiError::not_found("The generation"))
        }
        Err(e) => {
            tracing::error!(error = %e, "generation lookup failed");
            return Err(ApiError::internal());
        }
    };
    let body = json!({"data": {
        "id": row.generation_id,
        "key_name": row.key_name,
        "requested_model": row.requested_model,
        "model": row.resolved_model,
        "provider": row.provider,
        "region": row.region,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "cost": row.cost.exact(),
        "status": row.status,
        "http_status": row.http_status,
        "error_code": row.error_code,
        "streamed": row.streamed != 0,
        "latency_ms": row.latency_ms,
        "started_at": time_util::format_rfc3339(row.started_at),
        "completed_at": time_util::format_rfc3339(row.completed_at),
        // OpenRouter's names for the same facts (finish reasons are not recorded).
        "total_cost": row.cost.json_number(),
        "tokens_prompt": row.prompt_tokens,
        "tokens_completion": row.completion_tokens,
        "provider_name": row.provider,
        "created_at": time_util::format_rfc3339(row.started_at),
        "finish_reason": Value::Null,
    }});
    Ok(ok(authed.available(), body))
}
