//! `POST /api/v1/leaked-tokens`: leaked-token reports from a secret-scanning programme, in
//! GitHub's partner format. Public: whoever holds a token can already spend it, so letting
//! them stop it only helps (GitHub's own revocation API works the same way). When the
//! operator configured `leak_report_public_keys`, a report must carry a valid ECDSA P-256
//! SHA-256 signature of its raw body (`Github-Public-Key-Identifier`,
//! `Github-Public-Key-Signature`: base64 of the DER signature), else 401.
//!
//! Request: `[{"token", "type", "url", "source"}]`, at most [`MAX_REPORTS`] entries and
//! [`BODY_LIMIT`] bytes; answer: `[{"token_hash", "token_type", "label"}]`, `label` being
//! `true_positive` for a live secret of ours (quarantined at once: `store::key_secrets`)
//! and `false_positive` otherwise. A token failing the format or checksum is a false
//! positive without a database read. Reports are budgeted per client address.

use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};

use super::chat::read_body;
use super::error::ApiError;
use crate::config::LeakReportKey;
use crate::domain::text::has_control;
use crate::domain::token::hash_str;
use crate::domain::{time_util, ApiToken};
use crate::state::AppState;
use crate::store::key_secrets::LeakVerdict;

/// Entries in one report (GitHub sends batches of up to 1,000).
pub const MAX_REPORTS: usize = 1000;
/// Bytes of one report's body: 1,000 entries with URLs of a kilobyte or so.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;
/// A reported URL is kept (and shown to the owner) only if it is http(s), with no control
/// characters, and at most this long.
pub const URL_MAX: usize = 2048;
/// Other strings of an entry (`type`, `source`): at most this long.
const FIELD_MAX: usize = 200;

/// The configured public keys, parsed at start (a bad PEM fails the start, not a report).
pub struct LeakKeys(Vec<(String, VerifyingKey)>);

impl LeakKeys {
    pub fn parse(keys: &[LeakReportKey]) -> Result<Self, String> {
        keys.iter()
            .map(|k| {
                VerifyingKey::from_public_key_pem(k.key.trim())
                    .map(|v| (k.key_identifier.clone(), v))
                    .map_err(|e| {
                        format!(
                            "leak_report_public_keys: key {:?} is not a P-256 public key in PEM: {e}",
                            k.key_identifier
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(LeakKeys)
    }

    /// `Ok` when no key is configured, or the headers name a configured key whose signature
    /// of `body` verifies.
    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let refused = || ApiError::bad_signature();
        let id = header("github-public-key-identifier").ok_or_else(refused)?;
        let sig = header("github-public-key-signature").ok_or_else(refused)?;
        let (_, key) = self.0.iter().find(|(k, _)| k == id).ok_or_else(refused)?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(sig.trim())
            .map_err(|_| refused())?;
        let sig = Signature::from_der(&der).map_err(|_| refused())?;
        key.verify(body, &sig).map_err(|_| refused())
    }
}

#[derive(Deserialize)]
struct Report {
    token: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

#[derive(Serialize)]
struct Answer {
    token_hash: String,
    token_type: String,
    label: &'static str,
}

/// The reported URL if it is safe to keep and show: http(s), no control characters, at most
/// [`URL_MAX`] bytes (as parsed and re-serialised).
pub fn sanitize_url(raw: &str) -> Option<String> {
    if raw.len() > URL_MAX || has_control(raw) {
        return None;
    }
    let url = reqwest::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.as_str().len() > URL_MAX {
        return None;
    }
    Some(url.as_str().to_owned())
}

#[utoipa::path(post, path = "/api/v1/leaked-tokens", tag = "gateway",
    request_body(content = Vec<Object>, description = "GitHub's secret-scanning partner payload: `[{\"token\", \"type\", \"url\", \"source\"}]`, at most 1,000"),
    params(("Github-Public-Key-Identifier" = Option<String>, Header, description = "Required when the operator configured `leak_report_public_keys`"),
        ("Github-Public-Key-Signature" = Option<String>, Header, description = "Base64 ECDSA P-256 SHA-256 signature of the raw body")),
    responses((status = 200, description = "`[{\"token_hash\", \"token_type\", \"label\"}]`: `true_positive` for a working secret (now quarantined)", body = Vec<Object>),
        (status = 400, body = crate::gateway::openapi::ErrorBody), (status = 401, body = crate::gateway::openapi::ErrorBody),
        (status = 413, body = crate::gateway::openapi::ErrorBody), (status = 429, body = crate::gateway::openapi::ErrorBody)))]
pub async fn report(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if let Some(address) = state.proxies.client_ip(&req) {
        state.refusals.leak_report_from(address)?;
    }
    let body = read_body(payload, BODY_LIMIT).await?;
    state.leak_keys.check(req.headers(), &body)?;
    let reports: Vec<Report> = serde_json::from_slice(&body).map_err(|_| {
        ApiError::invalid_request(
            "The body must be a JSON array of {\"token\", \"type\", \"url\", \"source\"}.",
        )
    })?;
    if reports.len() > MAX_REPORTS {
        return Err(ApiError::invalid_request(format!(
            "At most {MAX_REPORTS} tokens per report."
        )));
    }
    let now = time_util::now_ms();
    let mut answers = Vec::with_capacity(reports.len());
    for r in &reports {
        let fields = [r.kind.as_deref(), r.source.as_deref()];
        if fields
            .iter()
            .flatten()
            .any(|f| f.len() > FIELD_MAX || has_control(f))
        {
            return Err(ApiError::invalid_request(
                "`type` and `source` must be short strings without control characters.",
            ));
        }
        let label = match ApiToken::parse(&r.token) {
            Ok(token) => {
                let url = r.url.as_deref().and_then(sanitize_url);
                let verdict = state
                    .store
                    .report_leak(&token.hash(), url.as_deref(), now)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "leak report not recorded");
                        ApiError::internal()
                    })?;
                if verdict == LeakVerdict::Live {
                    tracing::warn!(
                        prefix = token.display_prefix(),
                        "secret reported as leaked: quarantined"
                    );
                    crate::alerts::leak_reported(
                        state.store.clone(),
                        token.hash().0.clone(),
                        url.clone(),
                        state.outbox.clone(),
                    );
                    "true_positive"
                } else {
                    "false_positive"
                }
            }
            Err(_) => "false_positive",
        };
        answers.push(Answer {
            token_hash: hash_str(&r.token).0,
            token_type: r.kind.clone().unwrap_or_default(),
            label,
        });
    }
    Ok(HttpResponse::Ok().json(answers))
}
