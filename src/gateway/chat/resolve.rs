//! Which model serves the request (within the key's scope, region and the configured
//! providers), what it may cost at worst, and how a refused reservation is explained.

use super::outcome::cost_of;
use super::request::ChatRequest;
use crate::catalogue::{Model, ModelKind, ProviderKind, AUTO_MODEL};
use crate::domain::{time_util, Credits, ErrorCode};
use crate::gateway::auth::Authed;
use crate::gateway::echo;
use crate::gateway::error::ApiError;
use crate::state::AppState;
use crate::store::ledger::ReserveError;

/// The worst case a request can cost: exact for a model only echo serves (its plan, kept
/// for the answer), else the prompt bound plus the output bound once per choice.
pub(super) fn worst_case(
    state: &AppState,
    model: &Model,
    chat: &ChatRequest,
) -> (Option<echo::EchoPlan>, Credits) {
    let echo_only = model.routes.iter().all(|r| {
        state
            .catalogue
            .provider(&r.provider)
            .is_some_and(|p| p.kind == ProviderKind::Echo)
    });
    if echo_only {
        let plan = echo::plan(chat.messages(), chat.max_tokens);
        let hold = cost_of(model, plan.prompt_tokens, plan.completion_tokens);
        return (Some(plan), hold);
    }
    let cap = u64::from(model.max_output_tokens);
    let output = chat
        .max_tokens
        .map_or(cap, |m| m.min(cap))
        .saturating_mul(chat.choices);
    (None, cost_of(model, chat.prompt_bound, output))
}

pub(super) fn reserve_error(
    e: ReserveError,
    authed: &Authed,
    hold: Credits,
    now_ms: i64,
) -> ApiError {
    let key = &authed.key.key;
    // A limit's refusal: what is left of it, and when it resets.
    let refused = |code, what, reset: i64, limit: Option<i64>, spent: Credits| {
        let left = Credits::from_micros(limit.map_or(0, |l| (l - spent.micros()).max(0)));
        let retry_after = (reset - now_ms + 999) / 1000;
        ApiError::limit(
            code,
            what,
            retry_after,
            &time_util::format_minute(reset),
            left,
            hold,
        )
    };
    match e {
        ReserveError::DailyLimit => refused(
            ErrorCode::DailyLimitReached,
            "daily",
            time_util::next_day_start_ms(now_ms),
            key.daily_limit.map(Credits::micros),
            key.spent_today(now_ms),
        ),
        ReserveError::MonthlyLimit => refused(
            ErrorCode::MonthlyLimitReached,
            "monthly",
            time_util::next_month_start_ms(now_ms),
            key.monthly_limit.map(Credits::micros),
            key.spent_this_month(now_ms),
        ),
        ReserveError::InsufficientCredits => ApiError::insufficient_credits(),
        ReserveError::KeyInactive => {
            ApiError::unauthorized("This API key was disabled or deleted.")
        }
        ReserveError::Store(e) => {
            tracing::error!(error = %e, "reservation failed");
            ApiError::internal()
        }
    }
}

/// The catalogue model of `kind` for the request, within the key's scope and region.
pub(super) fn resolve_model<'a>(
    state: &'a AppState,
    authed: &Authed,
    requested: &str,
    kind: ModelKind,
) -> Result<&'a Model, ApiError> {
    let key = &authed.key.key;
    let cat = &state.catalogue;
    let region = key.region.as_deref();
    let servable = |m: &Model| cat.serves(m, region, |p| state.upstreams.is_usable(p));
    if requested == AUTO_MODEL {
        let preferred = cat.auto_preference.iter().filter_map(|id| cat.model(id));
        let rest = cat.models.iter();
        let mut allowed_anywhere = false;
        for m in preferred.chain(rest).filter(|m| m.kind == kind) {
            if key.allows_model(&m.id) {
                allowed_anywhere = true;
                if servable(m) {
                    return Ok(m);
                }
            }
        }
        return Err(match (allowed_anywhere, region) {
            (true, Some(r)) => ApiError::region_unavailable(AUTO_MODEL, r),
            (true, None) => {
                ApiError::upstream("No provider is available for the models this key may use.")
            }
            (false, _) => ApiError::model_not_allowed(AUTO_MODEL),
        });
    }
    let model = cat
        .model(requested)
        .ok_or_else(|| ApiError::model_not_found(requested))?;
    if !key.allows_model(&model.id) {
        return Err(ApiError::model_not_allowed(requested));
    }
    if model.kind != kind {
        return Err(ApiError::invalid_request(match model.kind {
            ModelKind::Embeddings => {
                format!("`{}` is an embeddings model: call /embeddings.", model.id)
            }
            ModelKind::Chat => format!("`{}` is a chat model: call /chat/completions.", model.id),
        }));
    }
    match region {
        Some(r) if cat.routes_in(model, Some(r)).next().is_none() => {
            Err(ApiError::region_unavailable(requested, r))
        }
        _ if !servable(model) => Err(ApiError::model_unavailable(&model.id)),
        _ => Ok(model),
    }
}
