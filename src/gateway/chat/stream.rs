//! Streams: the provider's SSE passes through line by line as it arrives; usage is read
//! from its final chunk, and the closing `data: [DONE]` is held back until the usage row
//! is durable.

use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::forward::{ReplyMessage, ReplyUsage};
use super::outcome::{Ctx, Outcome};
use super::reply;
use super::request::ChatRequest;
use crate::catalogue::Model;
use crate::domain::{Credits, ErrorCode};
use crate::gateway::error::ApiError;
use crate::state::AppState;
use crate::store::ledger::Reservation;
use crate::store::usage::UsageStatus;

/// A stream to pass through: everything its recording needs once it ends.
pub(super) struct StreamJob {
    state: AppState,
    ctx: Ctx,
    model: Model,
    reservation: Reservation,
    /// For the prompt bound, when the provider reports no usage.
    prompt_bound: u64,
    /// The client asked for the usage chunk (`stream_options.include_usage`, or OpenRouter's
    /// `usage.include`); the gateway always asks the provider for it, and removes it when
    /// the client did not.
    client_wants_usage: bool,
    /// OpenRouter's `usage.include`: the usage chunk is held back until the request is
    /// recorded, then sent with `usage.cost`, what the request was charged.
    include_cost: bool,
    /// The provider's name for the model, renamed to the catalogue id in every chunk.
    upstream_model: String,
}

/// What the pump saw of the stream.
#[derive(Default)]
struct Seen {
    usage: Option<(u64, u64)>,
    content_bytes: u64,
    failure: Option<String>,
    client_gone: bool,
}

impl StreamJob {
    pub fn new(
        state: &AppState,
        ctx: Ctx,
        model: &Model,
        reservation: Reservation,
        chat: &ChatRequest,
        upstream_model: &str,
    ) -> Self {
        StreamJob {
            state: state.clone(),
            ctx,
            model: model.clone(),
            reservation,
            prompt_bound: chat.prompt_bound,
            client_wants_usage: chat.wants_usage_chunk(),
            include_cost: chat.include_cost,
            upstream_model: upstream_model.to_owned(),
        }
    }

    /// Answers 200 with the stream, pumped by a task of its own.
    pub fn respond(self, upstream: BoxStream<'static, Result<Bytes, String>>) -> HttpResponse {
        let (tx, rx) = mpsc::channel::<Result<Bytes, actix_web::Error>>(32);
        let mut r = HttpResponse::Ok();
        self.ctx.headers(&self.state, &mut r, Credits::ZERO);
        // In the request's span: the stream's log lines name its request and generation.
        actix_web::rt::spawn(tracing::Instrument::in_current_span(
            self.pump(upstream, tx),
        ));
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        r.content_type("text/event-stream")
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
            .streaming(body)
    }

    /// Long on purpose: the stream's one loop (read, rename, forward, watch the deadline,
    /// record at the end); its exits are the stream's outcomes and read best side by side.
    async fn pump(
        self,
        mut upstream: BoxStream<'static, Result<Bytes, String>>,
        tx: mpsc::Sender<Result<Bytes, actix_web::Error>>,
    ) {
        let mut pending = BytesMut::new();
        let mut held = BytesMut::new();
        // The usage chunk, held back to carry the cost (`include_cost`).
        let mut usage_chunk: Option<BytesMut> = None;
        let mut seen = Seen::default();
        // The blank line that ends an event removed from the stream goes with it.
        let mut drop_blank = false;
        loop {
            let chunk = match upstream.next().await {
                None => break,
                Some(Err(e)) => {
                    seen.failure = Some(e);
                    break;
                }
                Some(Ok(c)) => c,
            };
            pending.extend_from_slice(&chunk);
            let mut out = BytesMut::new();
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line = pending.split_to(nl + 1);
                if !held.is_empty() {
                    held.extend_from_slice(&line);
                    continue;
                }
                if std::mem::take(&mut drop_blank) && matches!(&line[..], b"\n" | b"\r\n") {
                    continue;
                }
                match scan_line(&line) {
                    Line::Done => held.extend_from_slice(&line),
                    Line::Data(chunk) => {
                        seen.content_bytes += chunk.content_bytes();
                        let usage_only = chunk.choices.as_ref().is_some_and(Vec::is_empty);
                        if let Some(u) = chunk.usage {
                            seen.usage = Some((u.prompt_tokens, u.completion_tokens));
                        }
                        if usage_only && !self.client_wants_usage {
                            drop_blank = true;
                        } else if usage_only && self.include_cost {
                            usage_chunk = Some(BytesMut::from(&line[..]));
                            drop_blank = true;
                        } else {
                            out.extend_from_slice(&self.renamed(&line));
                        }
                    }
                    Line::Other => out.extend_from_slice(&line),
                }
            }
            if !out.is_empty() && tx.send(Ok(out.freeze())).await.is_err() {
                seen.client_gone = true;
                break;
            }
        }
        if !pending.is_empty() && held.is_empty() && seen.failure.is_none() && !seen.client_gone {
            let _ = tx.send(Ok(pending.split().freeze())).await;
        }
        let client_gone = seen.client_gone;
        let (outcome, failure) = self.outcome(seen);
        let recorded = self
            .ctx
            .record(&self.state, &outcome, Some(self.reservation.clone()))
            .await;
        if client_gone {
            return;
        }
        let tail = match (recorded, failure) {
            (Ok(charged), None) => {
                let mut tail = BytesMut::new();
                if let Some(line) = usage_chunk {
                    tail.extend_from_slice(&self.with_cost(&line, charged));
                    tail.extend_from_slice(b"\n");
                }
                tail.extend_from_slice(&held);
                tail.freeze()
            }
            (Err(e), _) => Bytes::from(format!("data: {}\n\n", e.body())),
            (Ok(_), Some(why)) => {
                let e = ApiError::upstream(format!("The provider stream failed: {why}."));
                Bytes::from(format!("data: {}\n\n", e.body()))
            }
        };
        if !tail.is_empty() {
            let _ = tx.send(Ok(tail)).await;
        }
    }

    /// A `data:` line with the catalogue id as its model (see `reply`); borrowed as it came
    /// when there is nothing to rename (every line of a stream passes here).
    fn renamed<'a>(&self, line: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match reply::rename_model(line, &self.upstream_model, &self.model.id) {
            Some(v) => std::borrow::Cow::Owned(v),
            None => std::borrow::Cow::Borrowed(line),
        }
    }

    /// The held usage chunk (`data: {…}\n`) renamed, with `usage.cost`.
    fn with_cost(&self, line: &[u8], charged: Credits) -> Bytes {
        let line = self.renamed(line);
        match reply::with_cost(scan_json(&line), charged) {
            Some(v) => Bytes::from([&b"data: "[..], &v, b"\n"].concat()),
            None => Bytes::copy_from_slice(&line),
        }
    }

    /// The stream's outcome: the provider's usage, or the prompt bound and the visible
    /// output; whatever was delivered is charged, a cut stream too.
    fn outcome(&self, seen: Seen) -> (Outcome, Option<String>) {
        let (prompt, completion) = seen
            .usage
            .unwrap_or((self.prompt_bound, seen.content_bytes.div_ceil(4)));
        let mut o = Outcome::served(&self.model, prompt, completion);
        if seen.failure.is_some() {
            o.status = UsageStatus::UpstreamError;
            o.error_code = Some(ErrorCode::UpstreamError);
        } else if seen.client_gone {
            o.error_code = Some(ErrorCode::ClientDisconnected);
        }
        (o, seen.failure)
    }
}

enum Line {
    Done,
    Data(ChunkSummary),
    Other,
}

/// The payload of a `data:` line (the line itself when it is not one).
fn scan_json(line: &[u8]) -> &[u8] {
    let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    match trimmed.strip_prefix(b"data:") {
        Some(data) => data.strip_prefix(b" ").unwrap_or(data),
        None => trimmed,
    }
}

fn scan_line(line: &[u8]) -> Line {
    if !line.starts_with(b"data:") {
        return Line::Other;
    }
    let data = scan_json(line);
    if data == b"[DONE]" {
        return Line::Done;
    }
    serde_json::from_slice(data).map_or(Line::Other, Line::Data)
}

/// What the gateway reads of a stream chunk (the rest is skipped, not built).
#[derive(serde::Deserialize)]
struct ChunkSummary {
    choices: Option<Vec<ChunkChoice>>,
    usage: Option<ReplyUsage>,
}

#[derive(serde::Deserialize)]
struct ChunkChoice {
    delta: Option<ReplyMessage>,
}

impl ChunkSummary {
    fn content_bytes(&self) -> u64 {
        self.choices
            .iter()
            .flatten()
            .filter_map(|c| c.delta.as_ref()?.content.as_ref())
            .map(|s| s.len() as u64)
            .sum()
    }
}
