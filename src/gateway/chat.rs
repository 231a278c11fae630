//! `POST /api/v1/chat/completions`: authenticate, parse, resolve the model within the key's
//! scope, reserve the worst-case cost, forward (with fallback across providers), settle and
//! record usage (awaiting its durability before the final bytes; see `usage_writer`), answer.

use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::auth::{authenticate, Authed};
use super::echo;
use super::error::ApiError;
use super::upstream::Failure;
use crate::catalogue::{Model, ProviderKind, AUTO_MODEL};
use crate::domain::{time_util, Credits};
use crate::startup::AppState;
use crate::store::ledger::{Reservation, ReserveError};
use crate::store::usage::{NewUsage, UsageEntry, UsageStatus};

/// A parsed chat request: the fields the gateway needs, plus the JSON object to forward.
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    /// Completions asked for (`n`): the output bound is held once per choice.
    pub choices: u64,
    pub body: serde_json::Map<String, Value>,
    pub body_len: usize,
}

impl ChatRequest {
    /// Checked non-empty by [`parse_chat`].
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

pub fn parse_chat(raw: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::invalid_request(format!("The body is not valid JSON: {e}.")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid_request("The body must be a JSON object."));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid_request(
                "`model` must be a non-empty string.",
            ))
        }
        None => return Err(ApiError::invalid_request("`model` is required.")),
    };
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid_request("`messages` must not be empty."))
        }
        _ => {
            return Err(ApiError::invalid_request(
                "`messages` must be an array of messages.",
            ))
        }
    };
    for (i, m) in messages.iter().enumerate() {
        if !m.get("role").is_some_and(Value::is_string) {
            return Err(ApiError::invalid_request(format!(
                "`messages[{i}].role` must be a string."
            )));
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid_request("`stream` must be true or false.")),
    };
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut max_tokens = None;
    for field in ["max_completion_tokens", "max_tokens"] {
        match body.get(field) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => {
                    max_tokens = Some(max_tokens.map_or(n, |m: u64| m.min(n)));
                }
                _ => {
                    return Err(ApiError::invalid_request(format!(
                        "`{field}` must be a positive integer."
                    )))
                }
            },
        }
    }
    let choices = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_CHOICES).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_request(format!(
                    "`n` must be an integer from 1 to {MAX_CHOICES}."
                )))
            }
        },
    };
    refuse_unpriced_fields(&body)?;
    Ok(ChatRequest {
        model,
        stream,
        include_usage,
        max_tokens,
        choices,
        body,
        body_len: raw.len(),
    })
}

/// The most completions one request may ask for (OpenAI's own bound).
pub const MAX_CHOICES: u64 = 128;

/// Fields that make a provider bill outside what the catalogue prices (tokens in, tokens
/// out): another price tier, audio, built-in web search, predicted outputs (rejected
/// prediction tokens are billed beyond `max_tokens`). The hold could not cover them, so
/// they are refused by name. Each entry: the field, and the values that are harmless
/// (absent and `null` always are). README, "Cost-affecting request fields", lists them.
const UNPRICED_FIELDS: [(&str, &[&str]); 6] = [
    ("service_tier", &["auto", "default"]),
    ("modalities", &["text"]),
    ("audio", &[]),
    ("web_search_options", &[]),
    ("prediction", &[]),
    ("plugins", &[]),
];

fn refuse_unpriced_fields(body: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    for (field, harmless) in UNPRICED_FIELDS {
        let value = match body.get(field) {
            None | Some(Value::Null) => continue,
            Some(v) => v,
        };
        let is_harmless = |v: &Value| v.as_str().is_some_and(|s| harmless.contains(&s));
        let ok = match value {
            Value::Array(items) => items.iter().all(is_harmless),
            v => is_harmless(v),
        };
        if !ok {
            let allowed = if harmless.is_empty() {
                String::new()
            } else {
                format!(" (accepted: {})", harmless.join(", "))
            };
            return Err(ApiError::invalid_request(format!(
                "`{field}` is not supported: this gateway prices text tokens only{allowed}."
            )));
        }
    }
    Ok(())
}

/// Reads the body up to the configured limit; a larger one is a 413.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<BytesMut, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::invalid_request(
                "The request body could not be read: it was cut off or arrived too slowly.",
            )
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Everything known about the request so far, for its usage row and response headers.
struct Ctx {
    authed: Authed,
    generation_id: String,
    started_ms: i64,
    started: Instant,
    requested_model: String,
    resolved_model: Option<String>,
    provider: Option<String>,
    region: Option<String>,
    streamed: bool,
}

struct Outcome {
    status: UsageStatus,
    http_status: StatusCode,
    error_code: Option<&'static str>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: Credits,
}

impl Outcome {
    fn failed(e: &ApiError) -> Self {
        Outcome {
            status: if e.status.is_server_error() {
                UsageStatus::UpstreamError
            } else {
                UsageStatus::ClientError
            },
            http_status: e.status,
            error_code: Some(e.code),
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: Credits::ZERO,
        }
    }
}

impl Ctx {
    fn entry(&self, o: &Outcome, reservation: Option<Reservation>) -> UsageEntry {
        let now = time_util::now_ms();
        let k = &self.authed.key.key;
        UsageEntry {
            usage: NewUsage {
                generation_id: self.generation_id.clone(),
                account_id: k.account_id,
                key_id: k.id,
                key_name: k.name.clone(),
                requested_model: self.requested_model.clone(),
                resolved_model: self.resolved_model.clone(),
                provider: self.provider.clone(),
                region: self.region.clone(),
                prompt_tokens: o.prompt_tokens as i64,
                completion_tokens: o.completion_tokens as i64,
                cost: reservation
                    .as_ref()
                    .map_or(0, |r| o.cost.micros().min(r.amount.micros())),
                status: o.status,
                http_status: o.http_status.as_u16(),
                error_code: o.error_code.map(str::to_owned),
                streamed: self.streamed,
                latency_ms: self.started.elapsed().as_millis() as i64,
                started_at: self.started_ms,
                completed_at: now,
            },
            reservation,
        }
    }

    /// Records the outcome and waits for its commit. The charge never exceeds the hold.
    async fn record(
        &self,
        state: &AppState,
        o: &Outcome,
        reservation: Option<Reservation>,
    ) -> Result<Credits, ApiError> {
        let charged = reservation
            .as_ref()
            .map_or(Credits::ZERO, |r| o.cost.min(r.amount));
        state.usage.record(self.entry(o, reservation)).await.map_err(|e| {
            tracing::error!(error = %e, generation_id = %self.generation_id, "usage not recorded");
            ApiError::internal()
        })?;
        Ok(charged)
    }

    /// The response's headers. The balance is the one read with the key, less what was
    /// charged since: on SQLite, the charges the hold book knows that read missed (this
    /// request's own, once recorded, among them); on PostgreSQL, this request's charge.
    fn headers(&self, state: &AppState, r: &mut HttpResponseBuilder, charged: Credits) {
        let gk = &self.authed.key;
        let since_read = state.holds.as_ref().map_or(charged, |book| {
            book.settled_after(gk.key.account_id, gk.settled_seq)
        });
        let balance = self.authed.available().saturating_sub(since_read);
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                r.insert_header((HeaderName::from_static(name), v));
            }
        };
        set("x-credit-balance", &balance.exact());
        set("x-lowrouter-generation-id", &self.generation_id);
        if let Some(p) = &self.provider {
            set("x-lowrouter-provider", p);
        }
        if let Some(reg) = &self.region {
            set("x-lowrouter-region", reg);
        }
    }

    async fn fail(
        &self,
        state: &AppState,
        e: ApiError,
        reservation: Option<Reservation>,
    ) -> HttpResponse {
        // A refusal without a hold to release is recorded only within the key's budget.
        // Beyond it the refusal is not recorded, and answered 429 (a 429 already is one:
        // it keeps its own code and `Retry-After`).
        if reservation.is_none() {
            if let Err(limited) = state.refusals.refused_for_key(self.authed.key.key.id) {
                let e = if e.status == StatusCode::TOO_MANY_REQUESTS {
                    e
                } else {
                    limited
                };
                return e.into_response();
            }
        }
        let e = match self.record(state, &Outcome::failed(&e), reservation).await {
            Ok(_) => e,
            Err(internal) => internal,
        };
        let body = e.body();
        let mut r = e.response();
        self.headers(state, &mut r, Credits::ZERO);
        r.json(body)
    }
}

/// A key read older than this when the body has arrived is read again before the
/// reservation: the hold book remembers applied charges only for
/// [`super::holds::SETTLED_FOR`], which must cover the gap between the read and the
/// reservation; a slow upload must not stretch it. The second read also refuses a key
/// deleted while its request's body was still arriving.
pub const REREAD_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// `gen-<unix ms, 13 digits>-<16 random alphanumerics>`. Time first, so ids sort by creation
/// and each new one lands at the right edge of the unique index on `usage.generation_id`: a
/// batch of rows then writes one or two index pages instead of one random page per row.
pub fn new_generation_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "gen-{:013}-{}",
        crate::domain::time_util::now_ms().max(0),
        Alphanumeric.sample_string(&mut rand::rng(), 16)
    )
}

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
    ctx.requested_model = crate::domain::text::client_label(&chat.model);
    ctx.streamed = chat.stream;
    let model = match resolve_model(&state, &ctx.authed, &chat.model) {
        Ok(m) => m,
        Err(e) => return ctx.fail(&state, e, None).await,
    };
    ctx.resolved_model = Some(model.id.clone());

    // The worst case: exact for echo, else a prompt bound plus the output cap.
    let echo_plan = (model.routes.iter().all(|r| {
        state
            .catalogue
            .provider(&r.provider)
            .is_some_and(|p| p.kind == ProviderKind::Echo)
    }))
    .then(|| echo::plan(chat.messages(), chat.max_tokens));
    let (prompt_bound, output_bound) = match &echo_plan {
        Some(p) => (p.prompt_tokens, p.completion_tokens),
        None => (
            (chat.body_len as u64).div_ceil(2) + 16,
            chat.max_tokens
                .map_or(u64::from(model.max_output_tokens), |m| {
                    m.min(u64::from(model.max_output_tokens))
                })
                .saturating_mul(chat.choices),
        ),
    };
    let hold = Credits::cost_of(prompt_bound, model.input_price)
        .saturating_add(Credits::cost_of(output_bound, model.output_price));
    let reserved = match &state.holds {
        Some(book) => book.reserve(&ctx.authed.key, hold, started_ms),
        _ => {
            state
                .store
                .reserve(&ctx.authed.key.key, hold, started_ms)
                .await
        }
    };
    let reservation = match reserved {
        Ok(r) => r,
        Err(e) => {
            let e = reserve_error(e, &ctx.authed, hold, started_ms);
            return ctx.fail(&state, e, None).await;
        }
    };
    forward(&state, ctx, model, chat, echo_plan, reservation).await
}

fn reserve_error(e: ReserveError, authed: &Authed, hold: Credits, now_ms: i64) -> ApiError {
    let key = &authed.key.key;
    let left = |limit: Option<i64>, spent: Credits| {
        Credits::from_micros(limit.map_or(0, |l| (l - spent.micros()).max(0)))
    };
    match e {
        ReserveError::DailyLimit => {
            let reset = time_util::next_day_start_ms(now_ms);
            ApiError::limit(
                "daily_limit_reached",
                "daily",
                (reset - now_ms + 999) / 1000,
                &time_util::format_minute(reset),
                left(key.daily_limit, key.spent_today(now_ms)),
                hold,
            )
        }
        ReserveError::MonthlyLimit => {
            let reset = time_util::next_month_start_ms(now_ms);
            ApiError::limit(
                "monthly_limit_reached",
                "monthly",
                (reset - now_ms + 999) / 1000,
                &time_util::format_minute(reset),
                left(key.monthly_limit, key.spent_this_month(now_ms)),
                hold,
            )
        }
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

/// The catalogue model for the request, within the key's scope and region.
fn resolve_model<'a>(
    state: &'a AppState,
    authed: &Authed,
    requested: &str,
) -> Result<&'a Model, ApiError> {
    let key = &authed.key.key;
    let cat = &state.catalogue;
    let region = key.region.as_deref();
    let servable = |m: &Model| {
        cat.routes_in(m, region)
            .any(|(_, p, _)| state.upstreams.is_usable(p))
    };
    if requested == AUTO_MODEL {
        let preferred = cat.auto_preference.iter().filter_map(|id| cat.model(id));
        let rest = cat.models.iter();
        let mut allowed_anywhere = false;
        for m in preferred.chain(rest) {
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
    match region {
        Some(r) if cat.routes_in(model, Some(r)).next().is_none() => {
            Err(ApiError::region_unavailable(requested, r))
        }
        _ if !servable(model) => Err(ApiError::model_unavailable(&model.id)),
        _ => Ok(model),
    }
}

async fn forward(
    state: &AppState,
    mut ctx: Ctx,
    model: &Model,
    mut chat: ChatRequest,
    echo_plan: Option<echo::EchoPlan>,
    reservation: Reservation,
) -> HttpResponse {
    let created = ctx.started_ms / 1000;
    let mut last_failure = String::from("no provider is configured for this model");
    // What the providers tried said, for the answer if none served.
    let (mut attempted, mut rate_limited, mut retry_after, mut auth_refused) = (0, 0, 0, false);
    let routes: Vec<_> = state
        .catalogue
        .routes_in(model, ctx.authed.key.key.region.as_deref())
        .collect();
    for (route, provider, region) in routes {
        if !state.upstreams.is_usable(provider) {
            continue;
        }
        if attempted > 0 {
            crate::metrics::upstream_fallback(&model.id);
        }
        ctx.provider = Some(provider.id.clone());
        ctx.region = Some(region.to_owned());
        if provider.kind == ProviderKind::Echo {
            let plan = echo_plan.unwrap_or_else(|| echo::plan(chat.messages(), chat.max_tokens));
            let cost = Credits::cost_of(plan.prompt_tokens, model.input_price)
                .saturating_add(Credits::cost_of(plan.completion_tokens, model.output_price));
            if chat.stream {
                let mut chunks = echo::sse_chunks(&plan, &ctx.generation_id, &model.id, created);
                if !chat.include_usage {
                    chunks.remove(chunks.len() - 2);
                }
                let body = futures_util::stream::iter(chunks.into_iter().map(Ok)).boxed();
                return stream_response(state, ctx, model, body, reservation, chat.body_len, true);
            }
            let outcome = Outcome {
                status: UsageStatus::Ok,
                http_status: StatusCode::OK,
                error_code: None,
                prompt_tokens: plan.prompt_tokens,
                completion_tokens: plan.completion_tokens,
                cost,
            };
            let body = echo::completion(&plan, &ctx.generation_id, &model.id, created);
            return match ctx.record(state, &outcome, Some(reservation)).await {
                Ok(charged) => {
                    let mut r = HttpResponse::Ok();
                    ctx.headers(state, &mut r, charged);
                    r.json(body)
                }
                Err(e) => e.into_response(),
            };
        }

        // The client's body, forwarded as is but for the upstream's model name (and asking
        // for usage in streams); changed in place, no copy per attempt.
        let body = &mut chat.body;
        body.insert("model".into(), Value::String(route.upstream_model.clone()));
        if chat.stream {
            let opts = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(o) = opts {
                o.insert("include_usage".into(), Value::Bool(true));
            }
        }
        let bytes = serde_json::to_vec(&*body).unwrap_or_default();
        match state.upstreams.send(provider, bytes).await {
            Ok(resp) if chat.stream => {
                let upstream = resp
                    .bytes_stream()
                    .map(|r| r.map_err(|e| super::upstream::describe(&e)))
                    .boxed();
                return stream_response(
                    state,
                    ctx,
                    model,
                    upstream,
                    reservation,
                    chat.body_len,
                    chat.include_usage,
                );
            }
            Ok(resp) => match resp.bytes().await {
                Ok(full) => {
                    return complete_response(state, ctx, model, full, reservation, chat.body_len)
                        .await
                }
                Err(e) => last_failure = super::upstream::describe(&e),
            },
            Err(Failure::Retryable(why)) => last_failure = why,
            Err(Failure::ProviderAuth(status)) => {
                auth_refused = true;
                last_failure = format!("provider refused the gateway's credentials ({status})");
            }
            Err(Failure::RateLimited(wait)) => {
                rate_limited += 1;
                retry_after = retry_after.max(wait.unwrap_or(1));
                last_failure = "provider rate-limited the gateway".into();
            }
            Err(Failure::Rejected { status, body }) => {
                return upstream_rejected(state, ctx, status, body, reservation).await;
            }
        }
        attempted += 1;
        crate::metrics::upstream_error(&provider.id);
        tracing::warn!(provider = %provider.id, reason = %last_failure, "provider failed; trying the next");
    }
    let e = if attempted > 0 && rate_limited == attempted {
        ApiError::upstream_rate_limited(&model.id, retry_after)
    } else if auth_refused {
        ApiError::upstream_auth(&model.id)
    } else {
        ApiError::upstream(format!(
            "Every provider for `{}` failed (last: {last_failure}). Nothing was charged.",
            model.id
        ))
    };
    ctx.fail(state, e, Some(reservation)).await
}

fn cost_of(model: &Model, prompt: u64, completion: u64) -> Credits {
    Credits::cost_of(prompt, model.input_price)
        .saturating_add(Credits::cost_of(completion, model.output_price))
}

/// Prompt estimate when a provider reports no usage: the same bound the hold used.
fn prompt_estimate(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(2) + 16
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
struct ReplyUsage {
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(serde::Deserialize)]
struct ReplyChoice {
    #[serde(default)]
    message: ReplyMessage,
}

#[derive(serde::Deserialize, Default)]
struct ReplyMessage {
    content: Option<String>,
}

async fn complete_response(
    state: &AppState,
    ctx: Ctx,
    model: &Model,
    full: Bytes,
    reservation: Reservation,
    body_len: usize,
) -> HttpResponse {
    let (prompt, completion) = match serde_json::from_slice::<ReplySummary>(&full) {
        Ok(ReplySummary { usage: Some(u), .. }) => (u.prompt_tokens, u.completion_tokens),
        // No usage reported: charge the prompt bound and the visible output.
        summary => {
            let text = summary
                .ok()
                .and_then(|s| s.choices.into_iter().next())
                .and_then(|c| c.message.content)
                .map_or(full.len(), |t| t.len());
            (prompt_estimate(body_len), (text as u64).div_ceil(4))
        }
    };
    let outcome = Outcome {
        status: UsageStatus::Ok,
        http_status: StatusCode::OK,
        error_code: None,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost: cost_of(model, prompt, completion),
    };
    match ctx.record(state, &outcome, Some(reservation)).await {
        Ok(charged) => {
            let mut r = HttpResponse::Ok();
            ctx.headers(state, &mut r, charged);
            r.content_type("application/json").body(full)
        }
        Err(e) => e.into_response(),
    }
}

/// A provider's 4xx goes back to the client in OpenAI form; nothing is charged.
async fn upstream_rejected(
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
        error_code: Some("upstream_rejected"),
        prompt_tokens: 0,
        completion_tokens: 0,
        cost: Credits::ZERO,
    };
    match ctx.record(state, &outcome, Some(reservation)).await {
        Ok(_) => {
            let mut r = HttpResponse::build(status);
            ctx.headers(state, &mut r, Credits::ZERO);
            r.json(body)
        }
        Err(e) => e.into_response(),
    }
}

/// Passes an SSE stream through line by line as it arrives. Usage is read from the final
/// chunk; the closing `data: [DONE]` is held back until the usage row is committed.
fn stream_response(
    state: &AppState,
    ctx: Ctx,
    model: &Model,
    upstream: BoxStream<'static, Result<Bytes, String>>,
    reservation: Reservation,
    body_len: usize,
    client_wants_usage: bool,
) -> HttpResponse {
    let (tx, rx) = mpsc::channel::<Result<Bytes, actix_web::Error>>(32);
    let mut r = HttpResponse::Ok();
    ctx.headers(state, &mut r, Credits::ZERO);
    let state = state.clone();
    let model = model.clone();
    // In the request's span: the stream's log lines name its request and generation.
    actix_web::rt::spawn(tracing::Instrument::in_current_span(async move {
        pump(
            state,
            ctx,
            model,
            upstream,
            reservation,
            body_len,
            client_wants_usage,
            tx,
        )
        .await;
    }));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    r.content_type("text/event-stream")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        .streaming(body)
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    state: AppState,
    ctx: Ctx,
    model: Model,
    mut upstream: BoxStream<'static, Result<Bytes, String>>,
    reservation: Reservation,
    body_len: usize,
    client_wants_usage: bool,
    tx: mpsc::Sender<Result<Bytes, actix_web::Error>>,
) {
    let mut pending = BytesMut::new();
    let mut held = BytesMut::new();
    let mut usage: Option<(u64, u64)> = None;
    let mut content_bytes: u64 = 0;
    let mut failure: Option<String> = None;
    let mut client_gone = false;
    loop {
        let chunk = match upstream.next().await {
            None => break,
            Some(Err(e)) => {
                failure = Some(e);
                break;
            }
            Some(Ok(c)) => c,
        };
        pending.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(nl + 1);
            if !held.is_empty() {
                held.extend_from_slice(&line);
                continue;
            }
            match scan_line(&line) {
                Line::Done => held.extend_from_slice(&line),
                Line::Data(chunk) => {
                    content_bytes += chunk.content_bytes();
                    let usage_only = chunk.choices.as_ref().is_some_and(Vec::is_empty);
                    if let Some(u) = chunk.usage {
                        usage = Some((u.prompt_tokens, u.completion_tokens));
                    }
                    if !usage_only || client_wants_usage {
                        out.extend_from_slice(&line);
                    }
                }
                Line::Other => out.extend_from_slice(&line),
            }
        }
        if !out.is_empty() && tx.send(Ok(out.freeze())).await.is_err() {
            client_gone = true;
            break;
        }
    }
    if !pending.is_empty() && held.is_empty() && failure.is_none() && !client_gone {
        let _ = tx.send(Ok(pending.split().freeze())).await;
    }
    let (prompt, completion) =
        usage.unwrap_or((prompt_estimate(body_len), content_bytes.div_ceil(4)));
    let outcome = Outcome {
        status: if failure.is_some() {
            UsageStatus::UpstreamError
        } else {
            UsageStatus::Ok
        },
        http_status: StatusCode::OK,
        error_code: if failure.is_some() {
            Some("upstream_error")
        } else if client_gone {
            Some("client_disconnected")
        } else {
            None
        },
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost: cost_of(&model, prompt, completion),
    };
    let recorded = ctx.record(&state, &outcome, Some(reservation)).await;
    if client_gone {
        return;
    }
    let tail = match (recorded, failure) {
        (Ok(_), None) => held.freeze(),
        (Err(e), _) => Bytes::from(format!("data: {}\n\n", e.body())),
        (Ok(_), Some(why)) => {
            let e = ApiError::upstream(format!("The provider stream failed: {why}."));
            Bytes::from(format!("data: {}\n\n", e.body()))
        }
    };
    if !tail.is_empty() {
        let _ = tx.send(Ok(tail)).await;
    }
}

enum Line {
    Done,
    Data(ChunkSummary),
    Other,
}

fn scan_line(line: &[u8]) -> Line {
    let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    let Some(data) = trimmed.strip_prefix(b"data:") else {
        return Line::Other;
    };
    let data = data.strip_prefix(b" ").unwrap_or(data);
    if data == b"[DONE]" {
        return Line::Done;
    }
    serde_json::from_slice(data).map_or(Line::Other, Line::Data)
}

/// What the gateway reads of a stream chunk (the rest is skipped, not built).
#[derive(serde::Deserialize)]
struct ChunkSummary {
    choices: Option<Vec<ChunkChoice>>,
    usage: Option<ReplyUsage>,
}

#[derive(serde::Deserialize)]
struct ChunkChoice {
    delta: Option<ReplyMessage>,
}

impl ChunkSummary {
    fn content_bytes(&self) -> u64 {
        self.choices
            .iter()
            .flatten()
            .filter_map(|c| c.delta.as_ref()?.content.as_ref())
            .map(|s| s.len() as u64)
            .sum()
    }
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
