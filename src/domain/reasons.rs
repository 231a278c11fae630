//! Plain reasons for the error codes a usage row can carry, in one table: the usage list,
//! the detail page, Home and the status filter all read it, so a code reads the same
//! everywhere ("429 · Daily limit reached").

use super::ErrorCode;

/// A usage row's outcome: served, refused (4xx) or failed (5xx); its reason is the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageStatus {
    Ok,
    ClientError,
    UpstreamError,
}

impl UsageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageStatus::Ok => "ok",
            UsageStatus::ClientError => "client_error",
            UsageStatus::UpstreamError => "upstream_error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(UsageStatus::Ok),
            "client_error" => Some(UsageStatus::ClientError),
            "upstream_error" => Some(UsageStatus::UpstreamError),
            _ => None,
        }
    }
}

/// Where a code can be seen, which decides what the Usage page offers for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// On usage rows: the status filter offers it.
    Recorded,
    /// Answered before any usage row exists (a budget spent, a token that is no key of any
    /// workspace): explained, accepted by the filter, not offered by it.
    Unrecorded,
    /// Only at doors that never write usage (the management API, leak reports).
    Elsewhere,
}

impl ErrorCode {
    /// The dashboard's words for the code. Exhaustive: a new code does not compile until
    /// the Usage page can explain it.
    pub const fn reason(self) -> &'static str {
        use ErrorCode::*;
        match self {
            DailyLimitReached => "Daily limit reached",
            MonthlyLimitReached => "Monthly limit reached",
            InsufficientCredits => "Not enough credits",
            ModelNotAllowed => "Model not allowed for this key",
            ModelNotFound => "Unknown model",
            ModelUnavailable => "Model not offered on this gateway",
            RegionUnavailable => "No provider in the key's region",
            InvalidRequest => "Invalid request",
            RequestTooLarge => "Request too large",
            TooManyRefusedRequests => "Too many refused requests",
            TooManyFailedAuthentications => "Too many invalid keys",
            InvalidApiKey => "Invalid API key",
            KeyRevoked => "Key deleted",
            KeyDisabled => "Key disabled",
            KeyIdle => "Key disabled after going unused",
            KeyExpired => "Key expired",
            SecretRetired => "Secret retired after a Roll",
            SecretQuarantined => "Secret reported as leaked",
            RateLimitExceeded => "Rate limit (per minute or in flight)",
            NotFound => "Not found",
            UpstreamRejected => "Provider rejected the request",
            UpstreamRateLimited => "Providers busy (rate-limited)",
            UpstreamAuthError => "Provider refused the gateway",
            UpstreamError => "Provider failed",
            InternalError => "Gateway error",
            ClientDisconnected => "Client disconnected",
            TooManyReports => "Too many leak reports",
            WrongKeyType => "Wrong kind of key",
            InsufficientRole => "Role does not allow this",
            ReadOnlyKey => "Read-only management key",
            EmailUnverified => "Email address not verified",
            IdempotencyReplay => "Already created with this Idempotency-Key",
            IdempotencyKeyReused => "Idempotency-Key reused",
            InvalidSignature => "Invalid signature",
            MethodNotAllowed => "Method not allowed",
        }
    }

    /// Where the code can be seen. Exhaustive, like [`ErrorCode::reason`].
    pub const fn seen(self) -> Seen {
        use ErrorCode::*;
        match self {
            TooManyRefusedRequests | TooManyFailedAuthentications | InvalidApiKey => {
                Seen::Unrecorded
            }
            DailyLimitReached | MonthlyLimitReached | InsufficientCredits | ModelNotAllowed
            | ModelNotFound | ModelUnavailable | RegionUnavailable | InvalidRequest
            | RequestTooLarge | KeyRevoked | KeyDisabled | KeyIdle | KeyExpired | SecretRetired
            | SecretQuarantined | RateLimitExceeded | NotFound | UpstreamRejected
            | UpstreamRateLimited | UpstreamAuthError | UpstreamError | InternalError
            | ClientDisconnected => Seen::Recorded,
            TooManyReports | WrongKeyType | InsufficientRole | ReadOnlyKey | EmailUnverified
            | IdempotencyReplay | IdempotencyKeyReused | InvalidSignature | MethodNotAllowed => {
                Seen::Elsewhere
            }
        }
    }

    /// What a refusal means and what to do about it, for a failed request's page: the
    /// client got its own message; this is the owner's side of it.
    pub fn advice(self) -> Option<&'static str> {
        use ErrorCode::*;
        Some(match self {
            DailyLimitReached | MonthlyLimitReached => {
                "Each request holds its worst-case cost against the key's limit until it is \
                 settled; a request whose hold does not fit in what is left of the limit is \
                 refused, even when the limit is not quite spent. Raise or remove the limit with \
                 Edit, or wait for the period to reset (00:00 UTC)."
            }
            InsufficientCredits => {
                "The workspace's spendable balance (its balance less what requests in flight \
                 hold) was below this request's worst-case cost. Add credits, or lower \
                 max_tokens so the request holds less."
            }
            KeyDisabled | KeyIdle => "The key is disabled: Enable it on the Keys page.",
            KeyExpired => {
                "The key passed its expiry date: set a later one with Edit, or create a new key."
            }
            KeyRevoked => {
                "The key was deleted: nothing brings it back. Create a new key and deploy it."
            }
            SecretRetired => {
                "The secret used was replaced by a Roll and has retired: deploy the key's current \
                 secret (the Keys page shows its last four characters), or Roll again if it was lost."
            }
            SecretQuarantined => {
                "The secret used was reported as leaked and is blocked: Roll the key and deploy the \
                 new secret."
            }
            RateLimitExceeded => {
                "The key's requests-per-minute or concurrency limit was reached: the client should \
                 retry after Retry-After, or raise the limit with Edit."
            }
            ModelNotAllowed => {
                "The key's scope does not include this model: add it with Edit, or use another key."
            }
            RegionUnavailable => "No provider of this model serves the key's pinned region.",
            ModelUnavailable => "This gateway has no provider configured for the model.",
            _ => return None,
        })
    }
}

/// A stored code's advice (see [`ErrorCode::advice`]); None for a code this build does not
/// know.
pub fn advice(code: &str) -> Option<&'static str> {
    ErrorCode::parse(code).and_then(ErrorCode::advice)
}

/// The reason of a stored code, if it is one the Usage page can meet (recorded or not).
pub fn reason_of(code: &str) -> Option<&'static str> {
    ErrorCode::parse(code)
        .filter(|c| c.seen() != Seen::Elsewhere)
        .map(ErrorCode::reason)
}

/// `429 · Daily limit reached`: the HTTP status and a plain reason, for any row.
pub fn status_line(http_status: i64, error_code: Option<&str>) -> String {
    let reason = error_code
        .and_then(reason_of)
        .or_else(|| {
            u16::try_from(http_status)
                .ok()
                .and_then(|s| actix_web::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
        })
        .unwrap_or("Unknown");
    format!("{http_status} · {reason}")
}

/// A choice of the Usage page's status filter: an outcome (`ok`, `client_error`,
/// `upstream_error`) or one reason's code.
pub struct StatusChoice {
    pub value: &'static str,
    pub label: &'static str,
}

pub const OUTCOMES: [StatusChoice; 3] = [
    StatusChoice {
        value: "ok",
        label: "Succeeded",
    },
    StatusChoice {
        value: "client_error",
        label: "Refused (4xx): any reason",
    },
    StatusChoice {
        value: "upstream_error",
        label: "Failed (5xx): any reason",
    },
];

/// The reasons the filter offers: every code a recorded row can have (not those answered
/// without a row: budgets spent, and a token that is no key of any workspace), and not
/// `upstream_error`, which as a filter value means the outcome.
pub fn reason_choices() -> impl Iterator<Item = StatusChoice> {
    ErrorCode::ALL
        .iter()
        .filter(|c| c.seen() == Seen::Recorded && UsageStatus::parse(c.as_str()).is_none())
        .map(|c| StatusChoice {
            value: c.as_str(),
            label: c.reason(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code has words, and the filter offers exactly the recorded ones (less
    /// `upstream_error`, an outcome as a filter value), in the table's order.
    #[test]
    fn every_code_has_a_reason() {
        for &c in ErrorCode::ALL {
            assert!(!c.reason().is_empty(), "{c:?}");
            let known = c.seen() != Seen::Elsewhere;
            assert_eq!(reason_of(c.as_str()).is_some(), known, "{c:?}");
        }
        let offered: Vec<&str> = reason_choices().map(|c| c.value).collect();
        assert_eq!(offered.len(), 22);
        assert!(!offered.contains(&"upstream_error") && !offered.contains(&"invalid_api_key"));
        assert_eq!(offered[0], "daily_limit_reached");
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(429, Some("daily_limit_reached")),
            "429 · Daily limit reached"
        );
        assert_eq!(status_line(200, None), "200 · OK");
        assert_eq!(status_line(418, Some("brand_new")), "418 · I'm a teapot");
    }
}
