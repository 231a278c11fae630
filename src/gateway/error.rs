//! The gateway's error type: OpenAI-style JSON `{"error": {"message", "type", "code"}}` with
//! the status of the error table in README.md (the product contract's table). Messages never contain the token.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde_json::json;

use crate::domain::{Credits, ErrorCode};

/// `X-RateLimit-Limit` / `-Remaining` / `-Reset` (seconds until a request may pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: u64,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub kind: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<i64>,
    /// The request field at fault (400 `invalid_request` of the management API).
    pub param: Option<Box<str>>,
    /// A per-key rate limit's headers (429 `rate_limit_exceeded`).
    pub rate: Option<Box<RateHeaders>>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            kind,
            message: message.into(),
            retry_after: None,
            param: None,
            rate: None,
        }
    }

    /// 400 `invalid_request` naming the field at fault.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::invalid_request(message);
        e.param = Some(param.into().into_boxed_str());
        e
    }

    /// A management key on an inference endpoint, or an inference key on a management one.
    pub fn wrong_key_type(management_endpoint: bool) -> Self {
        let message = if management_endpoint {
            "This endpoint takes a management key (lr-mk-…), not an API key (lr-sk-…). Create one on the Management keys page."
        } else {
            "This endpoint takes an API key (lr-sk-…), not a management key (lr-mk-…)."
        };
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            ErrorCode::WrongKeyType,
            message,
        )
    }

    /// A read-only management key asked to change something.
    /// The key's owner's current role does not allow this (`least` is the role it needs).
    pub fn owner_role(least: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            ErrorCode::InsufficientRole,
            format!(
                "This management key acts with its owner's current role, and this needs {least} \
                 or above."
            ),
        )
    }

    /// The owner's role may not change this key (a developer's key, another's API key).
    pub fn not_your_key() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            ErrorCode::InsufficientRole,
            "This management key acts with its owner's role, a developer, who may change only \
             the keys they created.",
        )
    }

    pub fn read_only_key() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            ErrorCode::ReadOnlyKey,
            "This management key is read-only: it can list and read, not change.",
        )
    }

    /// With `require_email_verification` on, the management key's person (who made it on the
    /// dashboard) has not verified their email: it may read, not make or roll API keys.
    pub fn email_unverified() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            ErrorCode::EmailUnverified,
            "The person who created this management key has not verified their email address. Until they do (the link in their verification email, or Resend on the dashboard), it cannot create or roll API keys.",
        )
    }

    /// A retried create (same `Idempotency-Key`, same body): the key exists; its token was
    /// shown once, to the first request, and is never stored.
    pub fn idempotency_replay() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            ErrorCode::IdempotencyReplay,
            "A request with this Idempotency-Key already created this key. Its token was returned only to that request and is not stored: if it was lost, delete the key and create another.",
        )
    }

    /// The same `Idempotency-Key` with another body.
    pub fn idempotency_mismatch() -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            ErrorCode::IdempotencyKeyReused,
            "This Idempotency-Key was used with a different request body in the last 24 hours. Use a new key for a new request.",
        );
        e.param = Some("Idempotency-Key".into());
        e
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            ErrorCode::InvalidApiKey,
            message,
        )
    }

    /// A leaked-token report without a valid signature, when signatures are required.
    pub fn bad_signature() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            ErrorCode::InvalidSignature,
            "The report must be signed: Github-Public-Key-Identifier must name a configured key and Github-Public-Key-Signature hold a valid signature of the body.",
        )
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            ErrorCode::InvalidRequest,
            message,
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            ErrorCode::RequestTooLarge,
            format!("The request body is larger than {limit} bytes."),
        )
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            ErrorCode::ModelNotFound,
            format!("The model `{}` does not exist. GET /api/v1/models lists the models this key can use.", clip(model)),
        )
    }

    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            ErrorCode::ModelNotAllowed,
            format!("This API key is not allowed to use `{}`. Its allowed models are set in the dashboard.", clip(model)),
        )
    }

    pub fn region_unavailable(model: &str, region: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable_error",
            ErrorCode::RegionUnavailable,
            format!(
                "No provider serves `{}` in region {region}, to which this API key is pinned.",
                clip(model)
            ),
        )
    }

    /// A key limit refused the request. `remaining` is what the limit still allows,
    /// `needed` the request's worst-case cost, so the message says whether the limit is used
    /// up or merely too small for this request (then lowering max_tokens helps).
    pub fn limit(
        code: ErrorCode,
        what: &str,
        retry_after_secs: i64,
        resets: &str,
        remaining: Credits,
        needed: Credits,
    ) -> Self {
        let message = if remaining == Credits::ZERO {
            format!("This API key reached its {what} limit. It resets at {resets}.")
        } else {
            format!(
                "This request may cost up to {} credits, more than the {} credits left of this API key's {what} limit. \
                 Lower max_tokens, or wait until the limit resets at {resets}.",
                needed.display_precise(),
                remaining.display_precise()
            )
        };
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            code,
            message,
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// A budget of refused or failed requests is spent (see `gateway::refusals`).
    pub fn too_many(code: ErrorCode, message: &str, wait: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            code,
            message,
        );
        e.retry_after = Some(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX).max(0) + 1);
        e
    }

    pub fn insufficient_credits() -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            ErrorCode::InsufficientCredits,
            "The account's credit balance is too low for this request. Add credits, or lower max_tokens.",
        )
    }

    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            ErrorCode::UpstreamError,
            message,
        )
    }

    /// Every provider tried rate-limited the gateway: the client should wait as long as the
    /// most patient of them asked.
    pub fn upstream_rate_limited(model: &str, retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            ErrorCode::UpstreamRateLimited,
            format!(
                "Every provider for `{}` is rate-limiting requests. Retry after the time in Retry-After. Nothing was charged.",
                clip(model)
            ),
        );
        e.retry_after = Some(i64::try_from(retry_after_secs.max(1)).unwrap_or(i64::MAX));
        e
    }

    /// A provider refused the gateway's own credentials: the operator's fault, never the
    /// client's key (so not a 401), and nothing of the provider's answer is passed on.
    pub fn upstream_auth(model: &str) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            ErrorCode::UpstreamAuthError,
            format!(
                "The gateway could not authenticate with the provider of `{}`. This is a configuration problem on our side, not your API key. Nothing was charged.",
                clip(model)
            ),
        )
    }

    /// The model is in the catalogue but no provider for it is configured on this gateway.
    pub fn model_unavailable(model: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable_error",
            ErrorCode::ModelUnavailable,
            format!(
                "`{}` is not available on this gateway: no provider for it is configured. GET /api/v1/models lists the models it can serve.",
                clip(model)
            ),
        )
    }

    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            ErrorCode::MethodNotAllowed,
            format!("This endpoint accepts {allowed} only."),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            ErrorCode::InternalError,
            "The gateway failed to process this request. Nothing was charged.",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            ErrorCode::NotFound,
            format!("{what} was not found."),
        )
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({"error": {"message": self.message, "type": self.kind, "code": self.code.as_str()}});
        if let Some(p) = &self.param {
            body["error"]["param"] = json!(p);
        }
        body
    }

    /// The response, with `WWW-Authenticate` on 401 and `Retry-After` on 429.
    pub fn response(&self) -> HttpResponseBuilder {
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"lowrouter\""));
        }
        if let Some(s) = self.retry_after {
            r.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        if let Some(h) = self.rate.as_deref() {
            r.insert_header(("x-ratelimit-limit", h.limit.to_string()));
            r.insert_header(("x-ratelimit-remaining", h.remaining.to_string()));
            r.insert_header(("x-ratelimit-reset", h.reset_secs.to_string()));
        }
        r
    }

    pub fn into_response(self) -> HttpResponse {
        let body = self.body();
        self.response().json(body)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        self.clone().into_response()
    }
}

/// User-supplied text echoed in messages is bounded, its control characters escaped.
fn clip(s: &str) -> String {
    crate::domain::text::client_label(s)
}

#[cfg(test)]
mod reasons_tests {
    use super::{ApiError, ErrorCode};
    use crate::domain::reasons::Seen;

    /// The dashboard reads a reason for every code the gateway can answer or record.
    #[test]
    fn every_code_the_gateway_answers_has_a_reason() {
        let c = crate::domain::Credits::ZERO;
        let errors = [
            ApiError::unauthorized("x"),
            ApiError::invalid_request("x"),
            ApiError::too_large(1),
            ApiError::model_not_found("m"),
            ApiError::model_not_allowed("m"),
            ApiError::region_unavailable("m", "r"),
            ApiError::limit(ErrorCode::DailyLimitReached, "daily", 1, "t", c, c),
            ApiError::limit(ErrorCode::MonthlyLimitReached, "monthly", 1, "t", c, c),
            ApiError::too_many(ErrorCode::TooManyRefusedRequests, "x", Default::default()),
            ApiError::too_many(
                ErrorCode::TooManyFailedAuthentications,
                "x",
                Default::default(),
            ),
            ApiError::insufficient_credits(),
            ApiError::upstream("x"),
            ApiError::upstream_rate_limited("m", 1),
            ApiError::upstream_auth("m"),
            ApiError::model_unavailable("m"),
            ApiError::internal(),
            ApiError::not_found("x"),
        ];
        for e in errors {
            assert_ne!(e.code.seen(), Seen::Elsewhere, "{} has no reason", e.code);
        }
    }

    /// The wire format is the code's string, as before the enum.
    #[test]
    fn the_body_carries_the_wire_string() {
        let body = ApiError::insufficient_credits().body();
        assert_eq!(body["error"]["code"], "insufficient_credits");
        assert_eq!(body["error"]["type"], "insufficient_quota");
    }
}
