//! Group commit for usage rows. Requests hand their row (and the reservation it settles) to
//! one writer task and await their batch's commit before sending their final bytes, so a
//! response that reached the client complete is always recorded, even if the process is
//! killed right after. While one batch commits, the next one queues: under load a single
//! transaction carries hundreds of requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::holds::HoldBook;
use crate::store::usage::UsageEntry;
use crate::store::Store;

/// Most rows in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer before new ones wait for room (backpressure).
const QUEUE: usize = 8192;

struct Job {
    entry: UsageEntry,
    done: oneshot::Sender<bool>,
}

#[derive(Clone)]
pub struct UsageWriter {
    tx: mpsc::Sender<Job>,
}

#[derive(Debug, thiserror::Error)]
#[error("the usage record could not be written")]
pub struct RecordError;

impl UsageWriter {
    /// Starts the writer task on the current runtime. With a hold book (SQLite), settled
    /// holds are handed back to it after each commit.
    pub fn start(store: Store, holds: Option<Arc<HoldBook>>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, holds, rx));
        UsageWriter { tx }
    }

    /// Resolves once the row is committed.
    pub async fn record(&self, entry: UsageEntry) -> Result<(), RecordError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { entry, done })
            .await
            .map_err(|_| RecordError)?;
        match wait.await {
            Ok(true) => Ok(()),
            _ => Err(RecordError),
        }
    }
}

async fn run(store: Store, holds: Option<Arc<HoldBook>>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut entries: Vec<UsageEntry> = Vec::with_capacity(MAX_BATCH);
    let mut waiters: Vec<oneshot::Sender<bool>> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        for job in jobs.drain(..) {
            entries.push(job.entry);
            waiters.push(job.done);
        }
        let ok = write_with_retry(&store, holds.as_deref(), &entries).await;
        for done in waiters.drain(..) {
            let _ = done.send(ok);
        }
        entries.clear();
    }
}

async fn write_with_retry(store: &Store, holds: Option<&HoldBook>, entries: &[UsageEntry]) -> bool {
    let reservations = || entries.iter().filter_map(|e| e.reservation.as_ref());
    for (attempt, pause) in [10u64, 50, 250, 1000].into_iter().enumerate() {
        let mut numbered = None;
        let written = store
            .write_usage_batch_then(entries, |seq| {
                numbered = Some(seq);
                if let Some(book) = holds {
                    book.settling(
                        seq,
                        entries
                            .iter()
                            .filter_map(|e| e.reservation.as_ref().map(|r| (r, e.usage.cost))),
                    );
                }
            })
            .await;
        match written {
            Ok(()) => return true,
            Err(e) => {
                if let (Some(book), Some(seq)) = (holds, numbered) {
                    book.unsettle(seq, reservations());
                }
                tracing::warn!(error = %e, attempt, rows = entries.len(), "usage batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
    tracing::error!(rows = entries.len(), "usage batch failed for good");
    if let Some(book) = holds {
        book.release(reservations());
    }
    false
}
