//! Plain reasons for the error codes a usage row can carry, in one table: the usage list,
//! the detail page, Home and the status filter all read it, so a code reads the same
//! everywhere ("429 · Daily limit reached").

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

/// Every code the gateway records (`ApiError::code`, `forward`, `stream`), with its reason.
/// A code missing here still shows, as the HTTP status's own phrase.
pub const REASONS: [(&str, &str); 26] = [
    ("daily_limit_reached", "Daily limit reached"),
    ("monthly_limit_reached", "Monthly limit reached"),
    ("insufficient_credits", "Not enough credits"),
    ("model_not_allowed", "Model not allowed for this key"),
    ("model_not_found", "Unknown model"),
    ("model_unavailable", "Model not offered on this gateway"),
    ("region_unavailable", "No provider in the key's region"),
    ("invalid_request", "Invalid request"),
    ("request_too_large", "Request too large"),
    ("too_many_refused_requests", "Too many refused requests"),
    ("too_many_failed_authentications", "Too many invalid keys"),
    ("invalid_api_key", "Invalid API key"),
    ("key_revoked", "Key deleted"),
    ("key_disabled", "Key disabled"),
    ("key_idle", "Key disabled after going unused"),
    ("key_expired", "Key expired"),
    ("secret_retired", "Secret retired after a Roll"),
    ("secret_quarantined", "Secret reported as leaked"),
    (
        "rate_limit_exceeded",
        "Rate limit (per minute or in flight)",
    ),
    ("not_found", "Not found"),
    ("upstream_rejected", "Provider rejected the request"),
    ("upstream_rate_limited", "Providers busy (rate-limited)"),
    ("upstream_auth_error", "Provider refused the gateway"),
    ("upstream_error", "Provider failed"),
    ("internal_error", "Gateway error"),
    ("client_disconnected", "Client disconnected"),
];

/// What a refusal means and what to do about it, for a failed request's page: the client
/// got its own message; this is the owner's side of it.
pub fn advice(code: &str) -> Option<&'static str> {
    Some(match code {
        "daily_limit_reached" | "monthly_limit_reached" => {
            "Each request holds its worst-case cost against the key's limit until it is \
             settled; a request whose hold does not fit in what is left of the limit is \
             refused, even when the limit is not quite spent. Raise or remove the limit with \
             Edit, or wait for the period to reset (00:00 UTC)."
        }
        "insufficient_credits" => {
            "The workspace's spendable balance (its balance less what requests in flight \
             hold) was below this request's worst-case cost. Add credits, or lower \
             max_tokens so the request holds less."
        }
        "key_disabled" | "key_idle" => "The key is disabled: Enable it on the Keys page.",
        "key_expired" => {
            "The key passed its expiry date: set a later one with Edit, or create a new key."
        }
        "key_revoked" => {
            "The key was deleted: nothing brings it back. Create a new key and deploy it."
        }
        "secret_retired" => {
            "The secret used was replaced by a Roll and has retired: deploy the key's current \
             secret (the Keys page shows its last four characters), or Roll again if it was lost."
        }
        "secret_quarantined" => {
            "The secret used was reported as leaked and is blocked: Roll the key and deploy the \
             new secret."
        }
        "rate_limit_exceeded" => {
            "The key's requests-per-minute or concurrency limit was reached: the client should \
             retry after Retry-After, or raise the limit with Edit."
        }
        "model_not_allowed" => {
            "The key's scope does not include this model: add it with Edit, or use another key."
        }
        "region_unavailable" => "No provider of this model serves the key's pinned region.",
        "model_unavailable" => "This gateway has no provider configured for the model.",
        _ => return None,
    })
}

/// The reason of one code, if the table has it.
pub fn reason_of(code: &str) -> Option<&'static str> {
    REASONS.iter().find(|(c, _)| *c == code).map(|(_, r)| *r)
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

/// The reasons the filter offers: every code of the table that a recorded row can have
/// (not those answered without a row: budgets spent, and a token that is no key of any
/// workspace), and not `upstream_error`, which as a filter value means the outcome.
pub fn reason_choices() -> impl Iterator<Item = StatusChoice> {
    REASONS
        .iter()
        .filter(|(c, _)| {
            UsageStatus::parse(c).is_none()
                && !matches!(
                    *c,
                    "too_many_refused_requests"
                        | "too_many_failed_authentications"
                        | "invalid_api_key"
                )
        })
        .map(|(value, label)| StatusChoice { value, label })
}

#[cfg(test)]
mod tests {
    use super::*;

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
