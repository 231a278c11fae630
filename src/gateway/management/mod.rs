//! The management API under `/api/v1` (`/keys`, `/usage`, `/audit`): what the Keys and Usage pages do,
//! for scripts, authenticated with management keys (`lr-mk-…`). Handlers are thin: the
//! body and query are parsed into domain types at the edge (`body`), the key form's own
//! validator checks them (`domain::key_form`), the store does the rest. Every error is the
//! gateway's [`ApiError`] (400 `invalid_request` with `param` naming the field).

pub mod audit;
pub mod auth;
pub mod body;
pub mod keys;
pub mod org_usage;
pub mod roll;
pub mod usage;
pub mod usage_export;

use super::error::ApiError;
use crate::store::StoreError;

/// The largest request body: a key's fields take a few KiB at most.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The request body, within [`BODY_LIMIT`] and the body deadline: beyond, 413
/// `request_too_large` in the API's error shape (read after authentication).
pub async fn read_body(payload: actix_web::web::Payload) -> Result<bytes::Bytes, ApiError> {
    Ok(super::chat::read_body(payload, BODY_LIMIT).await?.freeze())
}

/// Default and largest page sizes of the list endpoints.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// `?limit=`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn parse_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_param(
                "limit",
                format!("`limit` must be a whole number from 1 to {MAX_LIMIT}."),
            )),
        },
    }
}

/// A store failure: `NotFound` is the caller's 404 (`what`), anything else is logged and 500.
pub fn store_error(what: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound => ApiError::not_found(what),
        e => {
            tracing::error!(error = %e, "management API: store failed");
            ApiError::internal()
        }
    }
}
