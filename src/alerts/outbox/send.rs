//! One delivery's request: signed, SSRF-checked (`alerts::target`), no redirects, and a
//! bounded read of the answer.

use futures_util::StreamExt;

use super::super::{sign, target, AlertConfig};
use crate::domain::time_util;
use crate::store::webhooks::DueDelivery;

/// Bytes of a receiver's answer read (and kept: none but the status).
const ANSWER_MAX: usize = 4096;

/// One POST; the answer's status, or why there was none (no URL, secret or body in it).
pub(super) async fn send(
    client: &reqwest::Client,
    cfg: &AlertConfig,
    d: &DueDelivery,
) -> Result<u16, String> {
    let url = target::parse(&d.url, cfg.allow_private_targets).map_err(|e| e.to_string())?;
    let t = time_util::now_ms() / 1000;
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header(
            sign::HEADER,
            sign::signature(&d.secret, t, d.payload.as_bytes()),
        )
        .body(d.payload.clone())
        .send()
        .await
        .map_err(describe)?;
    let status = resp.status().as_u16();
    // Read a little of the answer (some servers wait for it to be read), never more.
    let mut body = resp.bytes_stream();
    let mut read = 0;
    while read < ANSWER_MAX {
        match body.next().await {
            Some(Ok(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
    Ok(status)
}

fn describe(e: reqwest::Error) -> String {
    let refused = std::error::Error::source(&e)
        .into_iter()
        .chain(std::iter::successors(std::error::Error::source(&e), |s| {
            s.source()
        }))
        .any(|s| {
            s.downcast_ref::<target::TargetError>().is_some()
                || s.to_string().contains(target::REFUSED_MARK)
        });
    if refused {
        "refused: the host resolves to a non-public address".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "request failed".into()
    }
}
