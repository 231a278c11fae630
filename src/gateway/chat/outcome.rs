//! What became of a request: its [`Outcome`] (status, tokens, cost), recorded as a usage
//! row with the reservation it settles, and the response headers that report it. Every
//! answer of the completions endpoint goes through [`Ctx`]: refusals through
//! [`Ctx::fail`], everything else through [`Ctx::finish`] or the stream's own recording.

use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};

use crate::catalogue::Model;
use crate::domain::{time_util, Credits, ErrorCode};
use crate::gateway::auth::Authed;
use crate::gateway::error::ApiError;
use crate::state::AppState;
use crate::store::ledger::Reservation;
use crate::store::usage::{NewUsage, UsageEntry, UsageStatus};

/// The one cost function: tokens at the model's catalogue prices.
pub(super) fn cost_of(model: &Model, prompt: u64, completion: u64) -> Credits {
    Credits::cost_of(prompt, model.input_price)
        .saturating_add(Credits::cost_of(completion, model.output_price))
}

/// The prompt bound of a body of `body_len` bytes (at least one token per two bytes, plus
/// framing): what the hold assumes, and what is charged when a provider reports no usage.
pub(super) fn prompt_bound(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(2) + 16
}

/// Everything known about the request so far, for its usage row and response headers.
pub(super) struct Ctx {
    pub authed: Authed,
    pub generation_id: String,
    pub started_ms: i64,
    pub started: Instant,
    pub requested_model: String,
    pub resolved_model: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    pub streamed: bool,
    /// Where the request came from, coarsened (`domain::client_hint`).
    pub client: Option<String>,
    /// The key's in-flight slot (concurrency limit), given back when the request ends: the
    /// context lives until the response, or the stream, is done.
    pub _slot: Option<crate::gateway::rate_limit::Slot>,
}

pub(super) struct Outcome {
    pub status: UsageStatus,
    pub http_status: StatusCode,
    pub error_code: Option<ErrorCode>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Credits,
}

impl Outcome {
    /// Served: the tokens priced at the model's rates.
    pub fn served(model: &Model, prompt_tokens: u64, completion_tokens: u64) -> Self {
        Outcome {
            status: UsageStatus::Ok,
            http_status: StatusCode::OK,
            error_code: None,
            prompt_tokens,
            completion_tokens,
            cost: cost_of(model, prompt_tokens, completion_tokens),
        }
    }

    /// Refused by the gateway (or every provider failed): nothing is charged.
    pub fn failed(e: &ApiError) -> Self {
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
    /// The context of a request that `authed` made, before its body is read.
    pub fn open(
        state: &AppState,
        req: &actix_web::HttpRequest,
        authed: Authed,
        started: Instant,
        started_ms: i64,
        slot: Option<crate::gateway::rate_limit::Slot>,
    ) -> Ctx {
        Ctx {
            authed,
            generation_id: super::new_generation_id(),
            started_ms,
            started,
            requested_model: String::new(),
            resolved_model: None,
            provider: None,
            region: None,
            streamed: false,
            client: crate::domain::client_hint::client_hint(
                state.proxies.client_ip(req),
                req.headers()
                    .get(actix_web::http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
            ),
            _slot: slot,
        }
    }

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
                    .map_or(Credits::ZERO, |r| o.cost.min(r.amount)),
                status: o.status,
                http_status: o.http_status.as_u16(),
                error_code: o.error_code,
                streamed: self.streamed,
                latency_ms: self.started.elapsed().as_millis() as i64,
                started_at: self.started_ms,
                completed_at: now,
                secret_id: Some(self.authed.key.secret.secret_id),
                secret_last4: Some(self.authed.key.secret.secret_last4.clone()),
                client: self.client.clone(),
            },
            reservation,
        }
    }

    /// Records the outcome and waits for its commit. The charge never exceeds the hold.
    pub async fn record(
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
    pub fn headers(&self, state: &AppState, r: &mut HttpResponseBuilder, charged: Credits) {
        let gk = &self.authed.key;
        let since_read = state.ledger.charged_since_read(gk, charged);
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

    pub async fn fail(
        &self,
        state: &AppState,
        e: ApiError,
        reservation: Option<Reservation>,
    ) -> HttpResponse {
        // A refusal without a hold to release is recorded only within the key's budget.
        // Beyond it the refusal is not recorded, and answered 429 (a 429 already is one:
        // it keeps its own code and `Retry-After`).
        if reservation.is_none() {
            if let Err(limited) = state.refusals.refused_for_key(self.authed.key.key.id.0) {
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

    /// Records `o` and answers `status` with `body` and the usage headers; if the record
    /// cannot be made, the body is withheld and the client gets a 500 instead.
    pub async fn finish(
        &self,
        state: &AppState,
        o: &Outcome,
        reservation: Reservation,
        body: impl FnOnce(&mut HttpResponseBuilder, Credits) -> HttpResponse,
    ) -> HttpResponse {
        match self.record(state, o, Some(reservation)).await {
            Ok(charged) => {
                let mut r = HttpResponse::build(o.http_status);
                self.headers(state, &mut r, charged);
                body(&mut r, charged)
            }
            Err(e) => e.into_response(),
        }
    }
}
