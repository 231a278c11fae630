//! Security headers on every dashboard response, and `HEAD` answered like `GET`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::{DefaultHeaders, Next};

/// No inline script or style anywhere: scripts and styles come from `/static` only.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `Cache-Control: no-store` is added to every dashboard response that sets none: the pages
/// show the balance, usage and key names, and a shared or disk cache must keep none of it.
/// (`no-store` rather than `private, no-cache`: nothing here is worth revalidating, the pages
/// carry no validators.) Static assets set their own (`public, max-age=3600`), which stays:
/// `DefaultHeaders` never replaces a header the response has.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .add((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .add((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .add((
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .add((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .add((
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
}

/// Routes `HEAD` to the `GET` handler (dashboard routes are registered for `GET` only, and
/// `HEAD` was 404). actix-http decides at decode time that a `HEAD` response carries no body,
/// so the answer has the `GET`'s status and headers (`Content-Length` too) and no body. Every
/// dashboard `GET` is free of side effects beyond the session, as `HEAD` must be.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}
