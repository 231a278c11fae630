//! `POST /api/v1/embeddings`: authenticated, scoped, reserved, metered and forwarded like a
//! chat completion, so one key covers both. An embeddings model (`kind = "embeddings"` in
//! the catalogue) is priced per input token; the hold is the prompt bound of the body (at
//! least one token per two bytes) at that price, settled to the provider's `usage`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::forward::{client_reply, upstream_rejected, Attempts, ReplyUsage};
use super::outcome::{cost_of, prompt_bound, Outcome};
use super::request::required_model;
use super::{reserve, resolve::resolve_model, start};
use crate::catalogue::{ModelKind, ProviderKind};
use crate::domain::text::client_label;
use crate::gateway::error::ApiError;
use crate::gateway::upstream::Failure;
use crate::state::AppState;

/// A parsed embeddings request: the model, and the JSON object to forward.
pub struct EmbeddingsRequest {
    pub model: String,
    pub body: serde_json::Map<String, Value>,
    pub body_len: usize,
}

/// Checks what the gateway relies on: a model, and an `input` OpenAI accepts (a string, or
/// a non-empty array of strings or of token arrays). Other fields pass through.
pub fn parse_embeddings(raw: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::invalid_request(format!("The body is not valid JSON: {e}.")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid_request("The body must be a JSON object."));
    };
    let model = required_model(&body)?;
    let token_array = |v: &Value| {
        v.as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|t| t.as_u64().is_some()))
    };
    let valid = match body.get("input") {
        Some(Value::String(_)) => true,
        Some(Value::Array(items)) => {
            !items.is_empty()
                && (items.iter().all(Value::is_string)
                    || items.iter().all(|i| i.as_u64().is_some())
                    || items.iter().all(token_array))
        }
        _ => false,
    };
    if !valid {
        return Err(ApiError::invalid_request(
            "`input` must be a string, or a non-empty array of strings or of token arrays.",
        ));
    }
    Ok(EmbeddingsRequest {
        model,
        body,
        body_len: raw.len(),
    })
}

#[utoipa::path(post, path = "/api/v1/embeddings", tag = "gateway", security(("api_key" = [])),
    request_body(content = Object, description = "OpenAI embeddings request (`model`, `input`, …)"),
    responses((status = 200, description = "OpenAI embeddings response"),
        (status = 400, body = crate::gateway::openapi::ErrorBody), (status = 401, body = crate::gateway::openapi::ErrorBody), (status = 402, body = crate::gateway::openapi::ErrorBody),
        (status = 403, body = crate::gateway::openapi::ErrorBody), (status = 404, body = crate::gateway::openapi::ErrorBody), (status = 429, body = crate::gateway::openapi::ErrorBody),
        (status = 502, body = crate::gateway::openapi::ErrorBody), (status = 503, body = crate::gateway::openapi::ErrorBody)))]
pub async fn embeddings(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (mut ctx, mut request) = match start(&state, &req, payload, parse_embeddings).await {
        Ok(started) => started,
        Err(answer) => return answer,
    };
    ctx.requested_model = client_label(&request.model);
    let model = match resolve_model(&state, &ctx.authed, &request.model, ModelKind::Embeddings) {
        Ok(m) => m,
        Err(e) => return ctx.fail(&state, e, None).await,
    };
    ctx.resolved_model = Some(model.id.clone());
    let bound = prompt_bound(request.body_len);
    let reservation = match reserve(&state, &ctx, cost_of(model, bound, 0)).await {
        Ok(r) => r,
        Err(e) => return ctx.fail(&state, e, None).await,
    };

    let mut attempts = Attempts::default();
    let region = ctx.authed.key.key.region.clone();
    let routes: Vec<_> = state
        .catalogue
        .routes_in(model, region.as_deref())
        .collect();
    for (route, provider, region) in routes {
        // The built-in echo provider answers chat only.
        if provider.kind == ProviderKind::Echo || !state.upstreams.is_usable(provider) {
            continue;
        }
        ctx.provider = Some(provider.id.clone());
        ctx.region = Some(region.to_owned());
        let body = &mut request.body;
        body.insert("model".into(), Value::String(route.upstream_model.clone()));
        let bytes = match serde_json::to_vec(&*body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "request body not serializable");
                let e = ApiError::internal();
                return ctx.fail(&state, e, Some(reservation)).await;
            }
        };
        match state
            .upstreams
            .send(provider, ModelKind::Embeddings, bytes)
            .await
        {
            Ok(resp) => match state.upstreams.read_body(resp).await {
                Ok(full) => {
                    let prompt = serde_json::from_slice::<Reply>(&full)
                        .ok()
                        .and_then(|r| r.usage)
                        .map_or(bound, |u| u.prompt_tokens);
                    let outcome = Outcome::served(model, prompt, 0);
                    let upstream_model = &route.upstream_model;
                    return ctx
                        .finish(&state, &outcome, reservation, |r, _| {
                            let body = client_reply(full, upstream_model, &model.id, None);
                            r.content_type("application/json").body(body)
                        })
                        .await;
                }
                Err(why) => attempts.failed(&provider.id, why),
            },
            Err(Failure::Rejected { status, body }) => {
                return upstream_rejected(&state, ctx, status, body, reservation).await;
            }
            Err(f) => attempts.note(&provider.id, f),
        }
    }
    ctx.fail(&state, attempts.error(model), Some(reservation))
        .await
}

/// What the gateway reads of a provider's embeddings reply.
#[derive(serde::Deserialize)]
struct Reply {
    usage: Option<ReplyUsage>,
}
