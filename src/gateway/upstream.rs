//! Forwarding to OpenAI-compatible providers: a pooled HTTP client per worker thread,
//! provider credentials read once from the environment, and a classification of failures
//! into "try the next provider" and "answer the client".
//!
//! Why a client per thread: each actix worker runs its own single-threaded runtime, and a
//! pooled connection's task lives on the runtime that opened it. With one shared client,
//! a worker that checks out another worker's connection hands its request to that thread
//! and is woken back by it: two cross-thread wake-ups per request, on half the requests
//! with two workers. With one client per thread, a request and its connection share a
//! thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::http::StatusCode;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};

use crate::catalogue::{Catalogue, ModelKind, Provider, ProviderKind};

pub struct Upstreams {
    /// Tells this instance's clients apart in [`CLIENTS`] (tests run several in a process).
    id: u64,
    timeouts: Timeouts,
    /// The most bytes of an answer read whole (`upstream_max_body_bytes`).
    max_body: usize,
    /// Provider id -> where its chat completions go; only providers with credentials.
    endpoints: HashMap<String, Endpoint>,
}

/// A provider's completions URL, parsed once (not per request), and its credentials.
struct Endpoint {
    chat: reqwest::Url,
    embeddings: reqwest::Url,
    /// The `Authorization` value; None: the provider needs none.
    auth: Option<HeaderValue>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Each thread's client per [`Upstreams`] instance.
    static CLIENTS: RefCell<HashMap<u64, reqwest::Client>> = RefCell::new(HashMap::new());
}

/// How long a provider may take. None of them cuts a healthy stream that keeps sending:
///
/// - `connect`: to open the connection;
/// - `first_byte`: from sending the request to the response's status and headers (the
///   model's time to first token, for a stream);
/// - `idle`: between two reads of the response body (a stalled stream);
/// - `total`: the whole exchange. This bounds how long a request, and so its hold on the
///   key's limits and the account's balance, can live; the reservation sweeper releases
///   holds only once they are older than this (plus a margin).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

/// Why a provider attempt did not produce a usable response.
pub enum Failure {
    /// Nothing reached the client yet: the next provider may be tried.
    Retryable(String),
    /// The provider refused the operator's credentials (401/403): a configuration fault of
    /// the gateway, never the client's key. Logged loudly; the next provider is tried.
    ProviderAuth(StatusCode),
    /// The provider rate-limited us (429), asking to wait this many seconds if it said.
    RateLimited(Option<u64>),
    /// The provider refused the request (4xx): passed back to the client as is.
    Rejected {
        status: StatusCode,
        body: bytes::Bytes,
    },
}

impl Upstreams {
    pub fn new(catalogue: &Catalogue, timeouts: Timeouts, max_body: usize) -> anyhow::Result<Self> {
        let mut endpoints = HashMap::new();
        for p in catalogue
            .providers
            .iter()
            .filter(|p| p.kind == ProviderKind::Openai)
        {
            let auth = match &p.api_key_env {
                None => None,
                Some(var) => match std::env::var(var)
                    .ok()
                    .and_then(|k| HeaderValue::from_str(&format!("Bearer {k}")).ok())
                {
                    Some(mut v) => {
                        v.set_sensitive(true);
                        Some(v)
                    }
                    None => {
                        tracing::info!(provider = %p.id, env = %var, "provider disabled: its API key variable is not set");
                        continue;
                    }
                },
            };
            let url = |kind: ModelKind| {
                let url = format!("{}/{}", p.base_url.trim_end_matches('/'), kind.path());
                reqwest::Url::parse(&url).map_err(|e| {
                    anyhow::anyhow!("provider {}: base_url is not a valid URL: {e}", p.id)
                })
            };
            let endpoint = Endpoint {
                chat: url(ModelKind::Chat)?,
                embeddings: url(ModelKind::Embeddings)?,
                auth,
            };
            endpoints.insert(p.id.clone(), endpoint);
        }
        let upstreams = Upstreams {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            timeouts,
            max_body,
            endpoints,
        };
        upstreams.build_client()?; // Fail at start, not at the first request.
        Ok(upstreams)
    }

    fn build_client(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(self.timeouts.connect)
            .read_timeout(self.timeouts.idle)
            .timeout(self.timeouts.total)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
    }

    /// This thread's client (a cheap handle), built the first time.
    fn client(&self) -> Result<reqwest::Client, Failure> {
        CLIENTS.with(|cell| {
            let mut clients = cell.borrow_mut();
            if let Some(c) = clients.get(&self.id) {
                return Ok(c.clone());
            }
            let c = self
                .build_client()
                .map_err(|_| Failure::Retryable("HTTP client could not be built".into()))?;
            clients.insert(self.id, c.clone());
            Ok(c)
        })
    }

    /// Whether requests can be sent to this provider (echo always; HTTP ones with credentials).
    pub fn is_usable(&self, p: &Provider) -> bool {
        p.kind == ProviderKind::Echo || self.endpoints.contains_key(&p.id)
    }

    /// Sends the body; returns the response once its status is known to be 2xx.
    pub async fn send(
        &self,
        p: &Provider,
        kind: ModelKind,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, Failure> {
        let Some(endpoint) = self.endpoints.get(&p.id) else {
            return Err(Failure::Retryable("provider not configured".into()));
        };
        let url = match kind {
            ModelKind::Chat => &endpoint.chat,
            ModelKind::Embeddings => &endpoint.embeddings,
        };
        let mut req = self
            .client()?
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(auth) = &endpoint.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let first_byte = self.timeouts.first_byte.min(self.timeouts.total);
        let resp = match tokio::time::timeout(first_byte, req.send()).await {
            Err(_) => return Err(Failure::Retryable("timed out before responding".into())),
            Ok(r) => r.map_err(|e| Failure::Retryable(describe(&e)))?,
        };
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        if status.is_success() {
            Ok(resp)
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            tracing::error!(provider = %p.id, status = status.as_u16(),
                "the provider refused this gateway's credentials: check its API key variable");
            Err(Failure::ProviderAuth(status))
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            Err(Failure::RateLimited(wait))
        } else if status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT {
            match self.read_body(resp).await {
                Ok(body) => Err(Failure::Rejected { status, body }),
                Err(why) => Err(Failure::Retryable(format!(
                    "provider answered {status}: {why}"
                ))),
            }
        } else {
            // 5xx and 408: this provider cannot serve it now; another may.
            Err(Failure::Retryable(format!(
                "provider answered {}",
                status.as_u16()
            )))
        }
    }
}

impl Upstreams {
    /// A whole answer, at most `upstream_max_body_bytes` of it: a provider that sends more
    /// (or says it will) gets an error, read no further, so no provider can exhaust our
    /// memory. The error is a description for logs and the client (no URL, no body).
    pub async fn read_body(&self, mut resp: reqwest::Response) -> Result<bytes::Bytes, String> {
        let too_large = || format!("its answer is larger than {} bytes", self.max_body);
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(too_large());
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// A failure description for logs: never the URL's query or any credential.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_body() || e.is_decode() {
        "response body failed".into()
    } else {
        "request failed".into()
    }
}
