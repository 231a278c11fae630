//! Request bodies against slow-drip clients (slowloris): actix-web times out request
//! *headers* (5 s) but not bodies, so a client can hold a connection and a task forever by
//! sending a body byte by byte. Every request body here gets a deadline, counted from when
//! the handler starts, after which reading it fails (the handler answers 4xx and the
//! connection closes). Bodies sent without credentials (no `Authorization`, no session
//! cookie: sign-up and login forms, or anything an attacker sends) get a shorter deadline
//! and a bound on how many may be read at once per client address and in all; beyond it
//! the request is answered 503 with `Retry-After` before any of its body is read.
//! Authenticated gateway requests are never counted here: their key was checked first.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use futures_util::Stream;

/// Uncredentialed bodies read at once from one address, and in all.
pub const PER_ADDRESS: usize = 16;
pub const IN_ALL: usize = 512;
/// The deadline of an uncredentialed body (at most the configured one).
pub const UNCREDENTIALED_DEADLINE: Duration = Duration::from_secs(10);

/// Shared by every worker: the deadline and the uncredentialed readers in progress.
pub struct BodyGuard {
    deadline: Duration,
    readers: Mutex<Readers>,
}

#[derive(Default)]
struct Readers {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One uncredentialed reader; its slot is given back when the body is read or dropped.
struct Slot {
    guard: Arc<BodyGuard>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut r = self.guard.lock();
        r.total -= 1;
        if let Some(n) = r.per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                r.per_address.remove(&self.address);
            }
        }
    }
}

impl BodyGuard {
    pub fn new(deadline: Duration) -> Arc<Self> {
        Arc::new(BodyGuard {
            deadline,
            readers: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Readers> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_slot(self: &Arc<Self>, address: IpAddr) -> Option<Slot> {
        let mut r = self.lock();
        let mine = r.per_address.get(&address).copied().unwrap_or(0);
        if r.total >= IN_ALL || mine >= PER_ADDRESS {
            return None;
        }
        r.total += 1;
        *r.per_address.entry(address).or_default() += 1;
        Some(Slot {
            guard: self.clone(),
            address,
        })
    }
}

/// Whether the request may carry a body at all (a length above zero, or chunked).
fn has_body(req: &ServiceRequest) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

fn credentialed(req: &ServiceRequest) -> bool {
    req.headers().contains_key(header::AUTHORIZATION) || req.cookie("lowrouter_session").is_some()
}

#[derive(Debug, thiserror::Error)]
#[error("too many requests are sending their body at once; retry shortly")]
struct Busy;

impl ResponseError for Busy {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

/// The middleware (`actix_web::middleware::from_fn`).
pub async fn guard_bodies(
    guard: Arc<BodyGuard>,
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if !has_body(&req) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let (deadline, slot) = if credentialed(&req) {
        (guard.deadline, None)
    } else {
        let address = req.peer_addr().map(|a| a.ip());
        let slot = match address.map(|a| guard.take_slot(a)) {
            Some(None) => {
                let (http, _) = req.into_parts();
                let resp = Busy.error_response();
                return Ok(ServiceResponse::new(http, resp).map_into_right_body());
            }
            Some(slot) => slot,
            None => None,
        };
        (guard.deadline.min(UNCREDENTIALED_DEADLINE), slot)
    };
    let inner = req.take_payload();
    req.set_payload(Payload::Stream {
        payload: Box::pin(deadline_stream(inner, deadline, slot)),
    });
    Ok(next.call(req).await?.map_into_left_body())
}

/// The body, failing once `deadline` has passed; `slot` is held until the body ends.
fn deadline_stream(
    mut inner: Payload,
    deadline: Duration,
    slot: Option<Slot>,
) -> impl Stream<Item = Result<bytes::Bytes, PayloadError>> {
    let mut sleep = Box::pin(tokio::time::sleep(deadline));
    let mut slot = slot;
    let mut done = false;
    futures_util::stream::poll_fn(move |cx| {
        if done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut inner).poll_next(cx) {
            Poll::Ready(item) => {
                if !matches!(item, Some(Ok(_))) {
                    done = true;
                    slot.take();
                }
                Poll::Ready(item)
            }
            Poll::Pending => match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    done = true;
                    slot.take();
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body did not arrive in time",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_address_and_given_back() {
        let g = BodyGuard::new(Duration::from_secs(1));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<Slot> = (0..PER_ADDRESS).map(|_| g.take_slot(a).unwrap()).collect();
        assert!(g.take_slot(a).is_none(), "one address is bounded");
        assert!(g.take_slot(b).is_some(), "another address is not");
        drop(held);
        assert!(g.take_slot(a).is_some(), "slots come back");
        assert_eq!(g.lock().total, 0);
    }
}
