//! Logging and request tracing. `RUST_LOG` sets the filter (default `info`);
//! `LOWROUTER_LOG_FORMAT=json` writes one JSON object per line instead of text.
//!
//! Every request runs in a `request` span carrying its id (`x-request-id`, see
//! [`request_id`]), method and route pattern, and for gateway completions the generation id:
//! every log line written while it runs names the request it belongs to. The id is returned
//! in the `x-request-id` response header.
//!
//! Nothing secret is ever logged: tokens, passwords and session ids never enter a log call,
//! secret-bearing types (`ApiToken`, `Password`, `Secret`) print redacted `Debug`, and the
//! span records no header, cookie, query string or raw path: only the route's *pattern*
//! (`/keys/{id}/edit`), which the code defines.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// The request id header, read from the request and set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client (a UUID is 36; a trace id with a prefix fits).
pub const MAX_REQUEST_ID: usize = 64;

pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("LOWROUTER_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The client's `x-request-id` if it is sane (1 to [`MAX_REQUEST_ID`] visible ASCII
/// characters: no spaces, no control characters, nothing a log reader could be fooled by),
/// else a new one (20 random alphanumerics).
pub fn request_id(headers: &HeaderMap) -> String {
    let given = headers
        .get(&REQUEST_ID)
        .map(HeaderValue::as_bytes)
        .filter(|v| (1..=MAX_REQUEST_ID).contains(&v.len()) && v.iter().all(u8::is_ascii_graphic));
    match given {
        // Visible ASCII is UTF-8.
        Some(v) => String::from_utf8_lossy(v).into_owned(),
        None => {
            use rand::distr::{Alphanumeric, SampleString};
            Alphanumeric.sample_string(&mut rand::rng(), 20)
        }
    }
}

/// The method as a bounded label: a client may send any token as a method.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The outermost middleware: the request's id and span, its log line (`debug`, so that the
/// default `info` writes nothing per request: `RUST_LOG=info,lowrouter::telemetry=debug`
/// turns it on) and its metrics (`crate::metrics`).
pub async fn observe<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(req.headers());
    let method = method_label(req.method());
    // The pattern the path matches (`/keys/{id}/edit`), never the path itself.
    let route = req.match_pattern();
    let route = route.as_deref().unwrap_or("unmatched");
    let span = tracing::info_span!(
        "request",
        id = %id,
        method,
        route,
        generation_id = tracing::field::Empty,
    );
    // (The request is not cloned to answer errors here: routing needs it unshared.)
    let result = next.call(req).instrument(span.clone()).await;
    let id = HeaderValue::from_str(&id).ok();
    let (status, result) = match result {
        Ok(mut res) => {
            if let Some(id) = id {
                res.headers_mut().insert(REQUEST_ID, id);
            }
            (res.status(), Ok(res))
        }
        // A middleware's error: its response is built here, so it gets the id too.
        Err(e) => {
            let mut res = e.error_response();
            if let Some(id) = id {
                res.headers_mut().insert(REQUEST_ID, id);
            }
            (
                res.status(),
                Err(InternalError::from_response(e, res).into()),
            )
        }
    };
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request done"
        );
    });
    crate::metrics::http_request(method, route, status, elapsed);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(value: &[u8]) -> String {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_bytes(value).unwrap());
        request_id(&h)
    }

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        assert_eq!(id_for(b"abc-123_X.y:z"), "abc-123_X.y:z");
        let uuid = "0b9e3f43-5a9e-4f3a-8f6c-2d8a1c3e7b10";
        assert_eq!(id_for(uuid.as_bytes()), uuid);
        for bad in [
            &b"has space"[..],
            b"tab\there",
            &[b'a'; MAX_REQUEST_ID + 1],
            b"caf\xc3\xa9",
        ] {
            let got = id_for(bad);
            assert_ne!(got.as_bytes(), bad);
            assert_eq!(got.len(), 20);
            assert!(got.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_eq!(request_id(&HeaderMap::new()).len(), 20);
    }
}
