//! Forwarding to the model's providers in catalogue order, with fallback, and answering
//! from what came back: a complete body, a stream (see `stream`), a provider's 4xx.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

use super::outcome::{Ctx, Outcome};
use super::reply;
use super::request::{ChatRequest, GATEWAY_FIELDS};
use super::stream::StreamJob;
use crate::catalogue::{Model, ModelKind, ProviderKind};
use crate::domain::{Credits, ErrorCode};
use crate::gateway::echo;
use crate::gateway::error::ApiError;
use crate::gateway::upstream::{describe, Failure};
use crate::state::AppState;
use crate::store::ledger::Reservation;
use crate::store::usage::UsageStatus;

/// What the providers tried so far said, for the answer if none serves.
#[derive(Default)]
pub(super) struct Attempts {
    tried: usize,
    rate_limited: usize,
    /// The longest `Retry-After` a rate-limiting provider asked for.
    retry_after: u64,
    auth_refused: bool,
    last: Option<String>,
}

impl Attempts {
    pub(super) fn failed(&mut self, provider: &str, why: String) {
        crate::metrics::upstream_error(provider);
        tracing::warn!(provider, reason = %why, "provider failed; trying the next");
        self.tried += 1;
        self.last = Some(why);
    }

    pub(super) fn note(&mut self, provider: &str, f: Failure) {
        match f {
            Failure::Retryable(why) => self.failed(provider, why),
            Failure::ProviderAuth(status) => {
                self.auth_refused = true;
                self.failed(
                    provider,
                    format!("provider refused the gateway's credentials ({status})"),
                );
            }
            Failure::RateLimited(wait) => {
                self.rate_limited += 1;
                self.retry_after = self.retry_after.max(wait.unwrap_or(1));
                self.failed(provider, "provider rate-limited the gateway".into());
            }
            // Answered to the client by the caller.
            Failure::Rejected { .. } => {}
        }
    }

    /// The answer when no provider served: rate limits only if every provider rate-limited
    /// us, a credentials problem if one refused ours, else the last failure.
    pub(super) fn error(self, model: &Model) -> ApiError {
        if self.tried > 0 && self.rate_limited == self.tried {
            ApiError::upstream_rate_limited(&model.id, self.retry_after)
        } else if self.auth_refused {
            ApiError::upstream_auth(&model.id)
        } else {
            let last = self
                .last
                .as_deref()
                .unwrap_or("no provider is configured for this model");
            ApiError::upstream(format!(
                "Every provider for `{}` failed (last: {last}). Nothing was charged.",
                model.id
            ))
        }
    }
}

/// A model the request may be served by: the one asked for, then OpenRouter's `models`
/// fallbacks, in order.
pub(super) struct Candidate<'a> {
    pub model: &'a Model,
    /// The exact answer of a model only the built-in echo serves (see `resolve::worst_case`).
    pub echo_plan: Option<echo::EchoPlan>,
}

/// Tries each candidate's providers in the catalogue's order until one answers; the next
/// provider, then the next candidate, is tried when one fails before any byte was sent.
pub(super) async fn forward(
    state: &AppState,
    mut ctx: Ctx,
    candidates: Vec<Candidate<'_>>,
    mut chat: ChatRequest,
    reservation: Reservation,
) -> HttpResponse {
    let mut attempts = Attempts::default();
    let region = ctx.authed.key.key.region.clone();
    let first = candidates[0].model;
    let routes = candidates.into_iter().flat_map(|c| {
        let plan = c.echo_plan;
        let routes: Vec<_> = state
            .catalogue
            .routes_in(c.model, region.as_deref())
            .collect();
        routes.into_iter().map(move |r| (c.model, plan.clone(), r))
    });
    let routes: Vec<_> = routes.collect();
    for (model, echo_plan, (route, provider, region)) in routes {
        if !state.upstreams.is_usable(provider) {
            continue;
        }
        if attempts.tried > 0 {
            crate::metrics::upstream_fallback(&model.id);
        }
        ctx.resolved_model = Some(model.id.clone());
        ctx.provider = Some(provider.id.clone());
        ctx.region = Some(region.to_owned());
        if provider.kind == ProviderKind::Echo {
            let plan = echo_plan.unwrap_or_else(|| echo::plan(chat.messages(), chat.max_tokens));
            return answer_echo(state, ctx, model, &chat, plan, reservation).await;
        }
        let bytes = match upstream_body(&mut chat, &route.upstream_model) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "request body not serializable");
                return ctx
                    .fail(state, ApiError::internal(), Some(reservation))
                    .await;
            }
        };
        match state.upstreams.send(provider, ModelKind::Chat, bytes).await {
            Ok(resp) if chat.stream => {
                let upstream = resp
                    .bytes_stream()
                    .map(|r| r.map_err(|e| describe(&e)))
                    .boxed();
                let job =
                    StreamJob::new(state, ctx, model, reservation, &chat, &route.upstream_model);
                return job.respond(upstream);
            }
            Ok(resp) => match state.upstreams.read_body(resp).await {
                Ok(full) => {
                    let outcome = reply_outcome(model, &full, chat.prompt_bound);
                    let upstream_model = &route.upstream_model;
                    let include_cost = chat.include_cost;
                    return ctx
                        .finish(state, &outcome, reservation, |r, charged| {
                            let cost = include_cost.then_some(charged);
                            let body = client_reply(full, upstream_model, &model.id, cost);
                            r.content_type("application/json").body(body)
                        })
                        .await;
                }
                Err(why) => attempts.failed(&provider.id, why),
            },
            Err(Failure::Rejected { status, body }) => {
                return upstream_rejected(state, ctx, status, body, reservation).await;
            }
            Err(f) => attempts.note(&provider.id, f),
        }
    }
    ctx.resolved_model = Some(first.id.clone());
    ctx.fail(state, attempts.error(first), Some(reservation))
        .await
}

/// The client's body, forwarded as is but for the upstream's model name (and asking for
/// usage in streams); changed in place, no copy per attempt.
fn upstream_body(chat: &mut ChatRequest, upstream_model: &str) -> serde_json::Result<Vec<u8>> {
    let body = &mut chat.body;
    for field in GATEWAY_FIELDS {
        body.remove(field);
    }
    body.insert("model".into(), Value::String(upstream_model.to_owned()));
    if chat.stream {
        let opts = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    serde_json::to_vec(&*body)
}

/// `lowrouter/echo` answers in-process, streamed or not.
async fn answer_echo(
    state: &AppState,
    ctx: Ctx,
    model: &Model,
    chat: &ChatRequest,
    plan: echo::EchoPlan,
    reservation: Reservation,
) -> HttpResponse {
    let created = ctx.started_ms / 1000;
    if chat.stream {
        let chunks = echo::sse_chunks(&plan, &ctx.generation_id, &model.id, created);
        let body = futures_util::stream::iter(chunks.into_iter().map(Ok)).boxed();
        let job = StreamJob::new(state, ctx, model, reservation, chat, &model.id);
        return job.respond(body);
    }
    let outcome = Outcome::served(model, plan.prompt_tokens, plan.completion_tokens);
    let body = echo::completion(&plan, &ctx.generation_id, &model.id, created);
    let body = Bytes::from(body.to_string());
    let include_cost = chat.include_cost;
    ctx.finish(state, &outcome, reservation, |r, charged| {
        r.content_type("application/json").body(client_reply(
            body,
            &model.id,
            &model.id,
            include_cost.then_some(charged),
        ))
    })
    .await
}

/// What the gateway reads of a provider's reply; everything else passes through untouched
/// (and unparsed: serde skips unknown fields without building them).
#[derive(serde::Deserialize)]
struct ReplySummary {
    usage: Option<ReplyUsage>,
    #[serde(default)]
    choices: Vec<ReplyChoice>,
}

#[derive(serde::Deserialize)]
pub(super) struct ReplyUsage {
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(serde::Deserialize)]
struct ReplyChoice {
    #[serde(default)]
    message: ReplyMessage,
}

#[derive(serde::Deserialize, Default)]
pub(super) struct ReplyMessage {
    pub content: Option<String>,
}

/// A complete reply's outcome: the provider's usage, or when it reports none, the prompt
/// bound and the visible output (one token per 4 bytes).
fn reply_outcome(model: &Model, full: &Bytes, prompt_bound: u64) -> Outcome {
    let (prompt, completion) = match serde_json::from_slice::<ReplySummary>(full) {
        Ok(ReplySummary { usage: Some(u), .. }) => (u.prompt_tokens, u.completion_tokens),
        summary => {
            let text = summary
                .ok()
                .and_then(|s| s.choices.into_iter().next())
                .and_then(|c| c.message.content)
                .map_or(full.len(), |t| t.len());
            (prompt_bound, (text as u64).div_ceil(4))
        }
    };
    Outcome::served(model, prompt, completion)
}

/// A provider's 4xx goes back to the client in OpenAI form; nothing is charged.
pub(super) async fn upstream_rejected(
    state: &AppState,
    ctx: Ctx,
    status: StatusCode,
    body: Bytes,
    reservation: Reservation,
) -> HttpResponse {
    let passthrough = serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(|v| v.get("error").is_some_and(Value::is_object));
    let body = passthrough.unwrap_or_else(|| {
        serde_json::json!({"error": {
            "message": format!("The provider rejected the request ({}).", status.as_u16()),
            "type": "invalid_request_error", "code": "upstream_rejected"}})
    });
    let outcome = Outcome {
        status: UsageStatus::ClientError,
        http_status: status,
        error_code: Some(ErrorCode::UpstreamRejected),
        prompt_tokens: 0,
        completion_tokens: 0,
        cost: Credits::ZERO,
    };
    ctx.finish(state, &outcome, reservation, |r, _| r.json(body))
        .await
}

/// A complete reply as the client gets it (see `reply`): the catalogue id as its model, and
/// `usage.cost` when `cost` is given.
/// A reply that needs neither passes through as it came, without a copy.
pub(super) fn client_reply(
    body: Bytes,
    upstream_model: &str,
    model_id: &str,
    cost: Option<Credits>,
) -> Bytes {
    let body = reply::rename_model(&body, upstream_model, model_id).map_or(body, Bytes::from);
    match cost {
        Some(c) => reply::with_cost(&body, c).map_or(body, Bytes::from),
        None => body,
    }
}
