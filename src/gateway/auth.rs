//! Bearer authentication. The header must be exactly `Bearer <token>`; the token's shape and
//! checksum are checked before the database is touched, and the key is then read from the
//! database on every request (no cache that could serve a revoked or disabled key).

use actix_web::http::header::{HeaderMap, AUTHORIZATION};

use super::error::ApiError;
use crate::domain::token::{hash_str, ApiToken, ManagementToken, TokenError};
use crate::domain::{Credits, ErrorCode};
use crate::store::keys::{GatewayKey, KeyState};
use crate::store::Store;

/// The value after `Bearer ` in the one `Authorization` header, or what is wrong with it.
fn bearer_value(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(ApiError::unauthorized(
            "Missing Authorization header. Send `Authorization: Bearer <your LowRouter API key>`.",
        ));
    };
    if values.next().is_some() {
        return Err(ApiError::unauthorized(
            "Send exactly one Authorization header.",
        ));
    }
    let value = value.to_str().map_err(|_| malformed())?;
    value.strip_prefix("Bearer ").ok_or_else(malformed)
}

fn malformed() -> ApiError {
    ApiError::unauthorized("Malformed Authorization header: expected `Bearer ` followed by the API key, with no quotes or extra spaces.")
}

fn bad_checksum() -> ApiError {
    ApiError::unauthorized(
        "The API key's checksum does not match: it was mistyped or truncated. Copy it again.",
    )
}

/// Extracts an inference key's token from the `Authorization` header, or says what is
/// wrong with it (a management key: 403 `wrong_key_type`).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let token = bearer_value(headers)?;
    match ApiToken::parse(token) {
        Ok(_) => Ok(token),
        Err(TokenError::BadChecksum) => Err(bad_checksum()),
        Err(TokenError::Malformed) if ManagementToken::parse(token).is_ok() => {
            Err(ApiError::wrong_key_type(false))
        }
        Err(TokenError::Malformed) => Err(malformed()),
    }
}

/// The management API's counterpart of [`bearer_token`]: a management key's token (an
/// inference key: 403 `wrong_key_type`).
pub fn management_bearer(headers: &HeaderMap) -> Result<ManagementToken, ApiError> {
    let token = bearer_value(headers)?;
    match ManagementToken::parse(token) {
        Ok(t) => Ok(t),
        Err(TokenError::BadChecksum) => Err(bad_checksum()),
        Err(TokenError::Malformed) if ApiToken::parse(token).is_ok() => {
            Err(ApiError::wrong_key_type(true))
        }
        Err(TokenError::Malformed) => Err(malformed()),
    }
}

/// The authenticated key and its account's spendable balance.
pub struct Authed {
    pub key: GatewayKey,
}

impl Authed {
    pub fn available(&self) -> Credits {
        self.key.balance.saturating_sub(self.key.reserved)
    }
}

/// A refused authentication, with the key when the token was one of ours (revoked,
/// disabled, expired, idle; a retired or quarantined secret): the refusal belongs to that
/// key's history (`chat::begin` records it, within the key's refusal budget).
pub struct Refused {
    pub error: ApiError,
    pub dead: Option<DeadKey>,
}

/// A known key that refused the request, and why, as the usage row's `error_code` says it
/// (the client gets `invalid_api_key` and a message).
pub struct DeadKey {
    pub key: Authed,
    pub reason: DeadReason,
}

/// Why a known key refused a request: each is a reason of its own on the Usage page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    Revoked,
    Disabled,
    Idle,
    Expired,
    Retired,
    Quarantined,
}

impl DeadReason {
    /// The usage row's error code (`domain::reasons` has each one's words).
    pub fn code(self) -> ErrorCode {
        match self {
            DeadReason::Revoked => ErrorCode::KeyRevoked,
            DeadReason::Disabled => ErrorCode::KeyDisabled,
            DeadReason::Idle => ErrorCode::KeyIdle,
            DeadReason::Expired => ErrorCode::KeyExpired,
            DeadReason::Retired => ErrorCode::SecretRetired,
            DeadReason::Quarantined => ErrorCode::SecretQuarantined,
        }
    }

    /// What the alerts' dead-secret feed calls it.
    fn told(self) -> &'static str {
        match self {
            DeadReason::Revoked => "revoked",
            DeadReason::Disabled | DeadReason::Idle => "disabled",
            DeadReason::Expired => "expired",
            DeadReason::Retired => "retired",
            DeadReason::Quarantined => "quarantined",
        }
    }
}

/// `dead` hears of every refused use of a dead secret (alerts; a map insert, no I/O).
pub async fn authenticate(
    store: &Store,
    headers: &HeaderMap,
    now_ms: i64,
    dead: &crate::alerts::Feed,
) -> Result<Authed, ApiError> {
    authenticate_or_dead(store, headers, now_ms, dead)
        .await
        .map_err(|r| r.error)
}

/// [`authenticate`], keeping the key of a refusal by a known key ([`Refused::dead`]).
pub async fn authenticate_or_dead(
    store: &Store,
    headers: &HeaderMap,
    now_ms: i64,
    dead: &crate::alerts::Feed,
) -> Result<Authed, Refused> {
    let refused = |error| Refused { error, dead: None };
    let token = bearer_token(headers).map_err(refused)?;
    let key = store.gateway_key(&hash_str(token)).await.map_err(|e| {
        tracing::error!(error = %e, "key lookup failed");
        refused(ApiError::internal())
    })?;
    // Unknown and revoked read the same: a revoked token tells its holder nothing new.
    let invalid = || ApiError::unauthorized("Invalid API key.");
    let key = key.ok_or_else(|| refused(invalid()))?;
    let (reason, error) = match key.key.state(now_ms) {
        KeyState::Active => match check_secret(store, &key, now_ms).await {
            Ok(()) => return Ok(Authed { key }),
            Err(e) if key.secret.secret_quarantined_at.is_some() => (DeadReason::Quarantined, e),
            Err(e) => (DeadReason::Retired, e),
        },
        KeyState::Revoked => (DeadReason::Revoked, invalid()),
        KeyState::Disabled => (
            DeadReason::Disabled,
            ApiError::unauthorized("This API key is disabled. Enable it in the dashboard."),
        ),
        KeyState::Expired => (
            DeadReason::Expired,
            ApiError::unauthorized("This API key has expired."),
        ),
        KeyState::Idle => (
            DeadReason::Idle,
            ApiError::unauthorized(
                "This API key was disabled after going unused for the period set on it. Enable it in the dashboard.",
            ),
        ),
    };
    if error.status == actix_web::http::StatusCode::UNAUTHORIZED {
        dead.dead_use(
            key.key.account_id,
            key.key.id,
            key.secret.secret_id,
            reason.told(),
        );
    }
    Err(Refused {
        error,
        dead: Some(DeadKey {
            key: Authed { key },
            reason,
        }),
    })
}

/// The presented secret must be neither quarantined (reported as leaked) nor retired (rolled
/// and past its retirement; see `store::key_secrets`).
async fn check_secret(store: &Store, key: &GatewayKey, now_ms: i64) -> Result<(), ApiError> {
    let s = &key.secret;
    if s.secret_quarantined_at.is_some() {
        let place = s
            .secret_quarantine_url
            .as_deref()
            .map_or_else(String::new, |u| format!(" at {u}"));
        return Err(ApiError::unauthorized(format!(
            "This API key was reported as leaked{place} and is blocked. Roll the key in the dashboard to get a new secret."
        )));
    }
    let life = s.life();
    if let Some(at) = life.retired_at(now_ms) {
        if life.retired_at.is_none() {
            // First seen retired: stamp it, so that a later usage batch advancing its last
            // use cannot make a "when quiet" retirement undone.
            if let Err(e) = store.stamp_retired(s.secret_id, at).await {
                tracing::warn!(error = %e, "could not stamp a retired secret");
            }
        }
        // Name both secrets by their last characters (what the dashboard shows): the
        // client knows the one it sent; the current one is what to look for.
        return Err(ApiError::unauthorized(format!(
            "This API key was rotated: its secret ending in {} was replaced by a Roll and has been retired. Use the key's current secret, ending in {}. Lost it? Roll the key again in the dashboard.",
            s.secret_last4, key.key.token_last4
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn header_shapes() {
        let t = ApiToken::generate();
        let s = t.expose();
        assert_eq!(bearer_token(&headers(&format!("Bearer {s}"))).unwrap(), s);
        for bad in [
            format!("bearer {s}"),
            format!("Bearer  {s}"),
            format!("Bearer \"{s}\""),
            format!("Bearer {s} "),
            format!("Basic {s}"),
            s.to_owned(),
            "Bearer".to_owned(),
        ] {
            let e = bearer_token(&headers(&bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidApiKey);
            assert!(!e.message.contains(&s[10..]), "token echoed");
        }
        assert!(bearer_token(&HeaderMap::new()).is_err());
        let m = ManagementToken::generate();
        let e = bearer_token(&headers(&format!("Bearer {}", m.expose()))).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (403, ErrorCode::WrongKeyType));
        let h = headers(&format!("Bearer {s}"));
        let e = management_bearer(&h).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (403, ErrorCode::WrongKeyType));
        let h = headers(&format!("Bearer {}", m.expose()));
        assert_eq!(management_bearer(&h).unwrap(), m);
    }
}
