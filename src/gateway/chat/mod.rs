//! The inference endpoints. `POST /api/v1/chat/completions`: authenticate, parse
//! (`request`), resolve the model within the key's scope and reserve the worst-case cost
//! (`resolve`), forward with fallback across providers (`forward`, `stream`), settle and
//! record usage, awaiting its durability before the final bytes (`outcome`,
//! `usage_writer`), answer. `POST /api/v1/embeddings` (`embeddings`) takes the same steps.

mod embeddings;
mod forward;
mod outcome;
mod reply;
mod request;
mod resolve;
mod stream;

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};

pub use request::{
    new_generation_id, parse_chat, ChatRequest, MAX_CHOICES, MAX_FALLBACKS, REREAD_AFTER,
};

pub use embeddings::{__path_embeddings, embeddings};

use super::auth::{authenticate, authenticate_or_dead, Refused};
use super::error::ApiError;
use crate::catalogue::{Model, ModelKind};
use crate::domain::text::client_label;
use crate::domain::{time_util, Credits};
use crate::state::AppState;
use crate::store::ledger::Reservation;
use forward::{forward, Candidate};
use outcome::{Ctx, Outcome};
pub(crate) use request::read_body;
use resolve::{reserve_error, resolve_model, worst_case};

#[utoipa::path(post, path = "/api/v1/chat/completions", tag = "gateway", security(("api_key" = [])),
    request_body(content = Object, description = "OpenAI chat completion request (`model`, `messages`, `stream`, …)"),
    responses((status = 200, description = "OpenAI chat completion, or an SSE stream with `\"stream\": true`"),
        (status = 400, body = crate::gateway::openapi::ErrorBody), (status = 401, body = crate::gateway::openapi::ErrorBody), (status = 402, body = crate::gateway::openapi::ErrorBody),
        (status = 403, body = crate::gateway::openapi::ErrorBody), (status = 404, body = crate::gateway::openapi::ErrorBody), (status = 429, body = crate::gateway::openapi::ErrorBody),
        (status = 502, body = crate::gateway::openapi::ErrorBody), (status = 503, body = crate::gateway::openapi::ErrorBody)))]
pub async fn completions(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (mut ctx, chat) = match start(&state, &req, payload, parse_chat).await {
        Ok(started) => started,
        Err(answer) => return answer,
    };
    ctx.requested_model = client_label(&chat.model);
    ctx.streamed = chat.stream;
    let models = match resolve_candidates(&state, &ctx, &chat) {
        Ok(m) => m,
        Err(e) => return ctx.fail(&state, e, None).await,
    };
    ctx.resolved_model = Some(models[0].id.clone());
    // The hold covers whichever candidate serves: the dearest one's worst case.
    let mut hold = Credits::ZERO;
    let candidates: Vec<Candidate> = models
        .into_iter()
        .map(|model| {
            let (echo_plan, worst) = worst_case(&state, model, &chat);
            hold = hold.max(worst);
            Candidate { model, echo_plan }
        })
        .collect();
    match reserve(&state, &ctx, hold).await {
        Ok(reservation) => forward(&state, ctx, candidates, chat, reservation).await,
        Err(e) => ctx.fail(&state, e, None).await,
    }
}

/// The asked model, then OpenRouter's `models` fallbacks (duplicates dropped). A fallback the
/// key may not use, or that does not exist, is refused like the asked model would be; one
/// with no provider available now (region, configuration) is skipped, unless none is left.
fn resolve_candidates<'a>(
    state: &'a AppState,
    ctx: &Ctx,
    chat: &ChatRequest,
) -> Result<Vec<&'a Model>, ApiError> {
    let mut models = Vec::new();
    let mut unavailable = None;
    for asked in std::iter::once(&chat.model).chain(&chat.fallbacks) {
        match resolve_model(state, &ctx.authed, asked, ModelKind::Chat) {
            Ok(m) if !models.iter().any(|x: &&Model| x.id == m.id) => models.push(m),
            Ok(_) => {}
            Err(e) if e.status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE => {
                unavailable.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    match (models.is_empty(), unavailable) {
        (true, Some(e)) => Err(e),
        _ => Ok(models),
    }
}

/// What every inference endpoint starts with: authenticate (a refusal is answered at once),
/// open the request's context, read its body within the size limit and deadline.
async fn begin(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(Ctx, bytes::Bytes), HttpResponse> {
    let started = Instant::now();
    let started_ms = time_util::now_ms();
    let authed = match authenticate_or_dead(&state.store, req.headers(), started_ms, &state.alerts)
        .await
    {
        Ok(a) => a,
        Err(refused) => return Err(refused_auth(state, req, refused, started, started_ms).await),
    };
    // The key's own rate limits, before anything is read or held. A refusal is recorded
    // against the key like any other, within its budget of refusals (`Ctx::fail`).
    let slot = match state.rate_limits.admit(&authed.key.key, started_ms).await {
        Ok(s) => s,
        Err(e) => {
            let ctx = Ctx::open(state, req, authed, started, started_ms, None);
            return Err(ctx.fail(state, e, None).await);
        }
    };
    let ctx = Ctx::open(state, req, authed, started, started_ms, slot);
    tracing::Span::current().record("generation_id", ctx.generation_id.as_str());
    match read_body(payload, state.settings.max_body_bytes).await {
        Ok(b) => Ok((ctx, b.freeze())),
        Err(e) => Err(ctx.fail(state, e, None).await),
    }
}

/// A refused authentication's answer. When the token was a key of ours (disabled, expired,
/// deleted, a retired or quarantined secret), the refusal is recorded in that key's usage
/// history, within the key's budget of refusals; beyond it, it is only counted by the
/// alerts' dead-secret feed, so a client hammering a dead key cannot fill the table. The
/// answer never carries the balance headers of a key that no longer works.
async fn refused_auth(
    state: &AppState,
    req: &HttpRequest,
    refused: Refused,
    started: Instant,
    started_ms: i64,
) -> HttpResponse {
    let e = state.refusals.after_failed_auth(req, refused.error);
    if let Some(dead) = refused.dead {
        if e.status == actix_web::http::StatusCode::UNAUTHORIZED
            && state
                .refusals
                .refused_for_key(dead.key.key.key.id.0)
                .is_ok()
        {
            let ctx = Ctx::open(state, req, dead.key, started, started_ms, None);
            let mut outcome = Outcome::failed(&e);
            outcome.error_code = Some(dead.reason.code());
            if let Err(internal) = ctx.record(state, &outcome, None).await {
                return internal.into_response();
            }
        }
    }
    e.into_response()
}

/// [`begin`], then the body parsed by `parse` (a refusal is recorded and answered), and
/// after a slow upload the key read again: it (and what was settled) may have changed.
async fn start<T>(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
    parse: impl FnOnce(&[u8]) -> Result<T, ApiError>,
) -> Result<(Ctx, T), HttpResponse> {
    let (mut ctx, raw) = begin(state, req, payload).await?;
    let parsed = match parse(&raw) {
        Ok(p) => p,
        Err(e) => return Err(ctx.fail(state, e, None).await),
    };
    if ctx.started.elapsed() > REREAD_AFTER {
        match authenticate(
            &state.store,
            req.headers(),
            time_util::now_ms(),
            &state.alerts,
        )
        .await
        {
            Ok(a) => ctx.authed = a,
            Err(e) => return Err(e.into_response()),
        }
    }
    Ok((ctx, parsed))
}

/// Holds `hold` against the key's limits and the account's balance, or says which refused.
async fn reserve(state: &AppState, ctx: &Ctx, hold: Credits) -> Result<Reservation, ApiError> {
    state
        .ledger
        .reserve(&ctx.authed.key, hold, ctx.started_ms)
        .await
        .map_err(|e| reserve_error(e, &ctx.authed, hold, ctx.started_ms))
}

#[cfg(test)]
mod tests {
    use super::new_generation_id;

    #[test]
    fn generation_ids_sort_by_creation_time() {
        let first = new_generation_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_generation_id();
        assert!(first < second, "{first} then {second}");
        assert_eq!(first.len(), "gen-".len() + 13 + 1 + 16);
        assert_ne!(first[18..], second[18..]);
    }
}
