//! `POST /api/v1/chat/completions`: authenticate, parse (`request`), resolve the model
//! within the key's scope and reserve the worst-case cost (`resolve`), forward with fallback
//! across providers (`forward`, `stream`), settle and record usage, awaiting its durability
//! before the final bytes (`outcome`, `usage_writer`), answer.

mod forward;
mod outcome;
mod request;
mod resolve;
mod stream;

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};

pub use request::{new_generation_id, parse_chat, ChatRequest, MAX_CHOICES, REREAD_AFTER};

use super::auth::authenticate;
use crate::domain::text::client_label;
use crate::domain::time_util;
use crate::state::AppState;
use forward::forward;
use outcome::Ctx;
use request::read_body;
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
    let started = Instant::now();
    let started_ms = time_util::now_ms();
    let authed = match authenticate(&state.store, req.headers(), started_ms).await {
        Ok(a) => a,
        Err(e) => return state.refusals.after_failed_auth(&req, e).into_response(),
    };
    // The key's own rate limits, before anything is read or held (a refused request is not
    // recorded: it cost nothing).
    let slot = match state.rate_limits.admit(&authed.key.key, started_ms).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let mut ctx = Ctx {
        authed,
        generation_id: new_generation_id(),
        started_ms,
        started,
        requested_model: String::new(),
        resolved_model: None,
        provider: None,
        region: None,
        streamed: false,
        _slot: slot,
    };
    tracing::Span::current().record("generation_id", ctx.generation_id.as_str());
    let raw = match read_body(payload, state.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return ctx.fail(&state, e, None).await,
    };
    let chat = match parse_chat(&raw) {
        Ok(c) => c,
        Err(e) => return ctx.fail(&state, e, None).await,
    };
    if started.elapsed() > REREAD_AFTER {
        // A slow upload: the key (and what was settled) may have changed since the read.
        match authenticate(&state.store, req.headers(), time_util::now_ms()).await {
            Ok(a) => ctx.authed = a,
            Err(e) => return e.into_response(),
        }
    }
    ctx.requested_model = client_label(&chat.model);
    ctx.streamed = chat.stream;
    let model = match resolve_model(&state, &ctx.authed, &chat.model) {
        Ok(m) => m,
        Err(e) => return ctx.fail(&state, e, None).await,
    };
    ctx.resolved_model = Some(model.id.clone());

    let (echo_plan, hold) = worst_case(&state, model, &chat);
    let reserved = state.ledger.reserve(&ctx.authed.key, hold, started_ms);
    let reservation = match reserved.await {
        Ok(r) => r,
        Err(e) => {
            let e = reserve_error(e, &ctx.authed, hold, started_ms);
            return ctx.fail(&state, e, None).await;
        }
    };
    forward(&state, ctx, model, chat, echo_plan, reservation).await
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
