//! Every error code the gateway and the management API answer with, and a usage row can
//! carry, as one enum: the wire string (`as_str`) is what clients read in
//! `{"error": {"code"}}` and what the `usage.error_code` column stores, so it never changes;
//! `parse` reads a stored one back. The dashboard's words for each code are in
//! `domain::reasons`, matched exhaustively: a new code does not compile until the Usage page
//! can explain it.

/// Declares the enum, its list and its wire strings in one place, so `ALL` cannot miss a
/// variant and `as_str`/`parse` cannot disagree.
macro_rules! error_codes {
    ($($variant:ident = $wire:literal,)*) => {
        /// An error code (see the module's doc).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the order the Usage page lists reasons.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The wire and stored form (`daily_limit_reached`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                }
            }

            /// A stored or requested code; None for a string that is no code of this build.
            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s {
                    $($wire => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    DailyLimitReached = "daily_limit_reached",
    MonthlyLimitReached = "monthly_limit_reached",
    InsufficientCredits = "insufficient_credits",
    ModelNotAllowed = "model_not_allowed",
    ModelNotFound = "model_not_found",
    ModelUnavailable = "model_unavailable",
    RegionUnavailable = "region_unavailable",
    InvalidRequest = "invalid_request",
    RequestTooLarge = "request_too_large",
    TooManyRefusedRequests = "too_many_refused_requests",
    TooManyFailedAuthentications = "too_many_failed_authentications",
    InvalidApiKey = "invalid_api_key",
    KeyRevoked = "key_revoked",
    KeyDisabled = "key_disabled",
    KeyIdle = "key_idle",
    KeyExpired = "key_expired",
    SecretRetired = "secret_retired",
    SecretQuarantined = "secret_quarantined",
    RateLimitExceeded = "rate_limit_exceeded",
    NotFound = "not_found",
    UpstreamRejected = "upstream_rejected",
    UpstreamRateLimited = "upstream_rate_limited",
    UpstreamAuthError = "upstream_auth_error",
    UpstreamError = "upstream_error",
    InternalError = "internal_error",
    ClientDisconnected = "client_disconnected",
    TooManyReports = "too_many_reports",
    WrongKeyType = "wrong_key_type",
    InsufficientRole = "insufficient_role",
    ReadOnlyKey = "read_only_key",
    EmailUnverified = "email_unverified",
    IdempotencyReplay = "idempotency_replay",
    IdempotencyKeyReused = "idempotency_key_reused",
    InvalidSignature = "invalid_signature",
    MethodNotAllowed = "method_not_allowed",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its wire string: JSON bodies and the usage journal carry the same text as the column.
impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A string that is no code of this build does not decode (a journal record with one is
/// refused, not half-read: see `store::usage_journal`).
impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        ErrorCode::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_code_round_trips_through_its_wire_string() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code), "{code:?}");
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        assert_eq!(ErrorCode::parse("brand_new"), None);
        assert!(serde_json::from_str::<ErrorCode>("\"brand_new\"").is_err());
    }

    /// Wire strings are stored values: pinned, never renamed.
    #[test]
    fn wire_strings_are_pinned() {
        assert_eq!(ErrorCode::ALL.len(), 35);
        assert_eq!(ErrorCode::DailyLimitReached.as_str(), "daily_limit_reached");
        assert_eq!(ErrorCode::UpstreamAuthError.as_str(), "upstream_auth_error");
        assert_eq!(
            ErrorCode::IdempotencyKeyReused.as_str(),
            "idempotency_key_reused"
        );
        let mut seen = std::collections::HashSet::new();
        assert!(ErrorCode::ALL.iter().all(|c| seen.insert(c.as_str())));
    }
}
