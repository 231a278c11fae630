//! Group commit for usage rows. Requests hand their row (and the reservation it settles) to
//! one writer and await their batch's commit before sending their final bytes, so a
//! response that reached the client complete is always recorded, even if the process is
//! killed right after. While one batch commits, the next one queues: under load a single
//! transaction carries hundreds of requests.
//!
//! On SQLite the writer is an OS thread of its own that runs each batch synchronously
//! through rusqlite (`Store::write_usage_batch_blocking`): a request costs one wake-up of
//! that thread and one wake-up back. On PostgreSQL it is a task (the batch is network
//! round trips, which async handles well).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::holds::HoldBook;
use crate::store::usage::UsageEntry;
use crate::store::{Backend, Store};

/// Most rows in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer before new ones wait for room (backpressure).
const QUEUE: usize = 8192;
/// Pauses before each attempt at a batch: the first at once, then four retries.
const ATTEMPT_PAUSES_MS: [u64; 5] = [0, 10, 50, 250, 1000];

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
    /// Starts the writer: a thread on SQLite, a task on the current runtime on PostgreSQL.
    /// With a hold book (SQLite), settled holds are handed back to it at each commit.
    pub fn start(store: Store, holds: Option<Arc<HoldBook>>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        match store.backend() {
            Backend::Sqlite => {
                std::thread::Builder::new()
                    .name("usage-writer".into())
                    .spawn(move || run_blocking(&store, holds.as_deref(), rx))?;
            }
            // PostgreSQL keeps holds as rows (`store::ledger`): there is no hold book to settle.
            Backend::Postgres => {
                tokio::spawn(run_async(store, rx));
            }
        }
        Ok(UsageWriter { tx })
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

/// The jobs of one batch, split into rows and the requests waiting on them.
#[derive(Default)]
struct Batch {
    entries: Vec<UsageEntry>,
    waiters: Vec<oneshot::Sender<bool>>,
}

impl Batch {
    fn push(&mut self, job: Job) {
        self.entries.push(job.entry);
        self.waiters.push(job.done);
    }

    fn finish(&mut self, ok: bool) {
        for done in self.waiters.drain(..) {
            let _ = done.send(ok);
        }
        self.entries.clear();
    }
}

fn run_blocking(store: &Store, holds: Option<&HoldBook>, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Batch::default();
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.entries.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut ok = false;
        for (attempt, pause) in ATTEMPT_PAUSES_MS.into_iter().enumerate() {
            std::thread::sleep(Duration::from_millis(pause));
            match write_settling(store, holds, &batch.entries) {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => warn_failed(&e, attempt, batch.entries.len()),
            }
        }
        give_up_unless(ok, holds, &batch.entries);
        batch.finish(ok);
        // Between batches, after answering this one: the only moment no commit can interleave.
        if let Err(e) = store.restart_wal_if_full() {
            tracing::warn!(error = %e, "WAL restart failed");
        }
    }
}

async fn run_async(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut batch = Batch::default();
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        for job in jobs.drain(..) {
            batch.push(job);
        }
        let mut ok = false;
        for (attempt, pause) in ATTEMPT_PAUSES_MS.into_iter().enumerate() {
            if pause > 0 {
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            match store.write_usage_batch(&batch.entries).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => warn_failed(&e, attempt, batch.entries.len()),
            }
        }
        give_up_unless(ok, None, &batch.entries);
        batch.finish(ok);
    }
}

/// One attempt at a batch (SQLite), with the hold book kept in step: its holds become
/// settled charges just before the commit (under the batch's number), and go back in flight
/// if the commit fails after that.
fn write_settling(
    store: &Store,
    holds: Option<&HoldBook>,
    entries: &[UsageEntry],
) -> crate::store::Result<()> {
    let mut numbered = None;
    let result = store.write_usage_batch_blocking(entries, |seq| {
        numbered = Some(seq);
        if let Some(book) = holds {
            book.settling(
                seq,
                entries
                    .iter()
                    .filter_map(|e| e.reservation.as_ref().map(|r| (r, e.usage.cost))),
            );
        }
    });
    if let (Err(_), Some(book), Some(seq)) = (&result, holds, numbered) {
        book.unsettle(seq, entries.iter().filter_map(|e| e.reservation.as_ref()));
    }
    result
}

fn warn_failed(e: &dyn std::fmt::Display, attempt: usize, rows: usize) {
    tracing::warn!(error = %e, attempt, rows, "usage batch failed");
}

/// After the last failed attempt: nothing was charged, so the holds are dropped.
fn give_up_unless(ok: bool, holds: Option<&HoldBook>, entries: &[UsageEntry]) {
    if ok {
        return;
    }
    tracing::error!(rows = entries.len(), "usage batch failed for good");
    if let Some(book) = holds {
        book.release(entries.iter().filter_map(|e| e.reservation.as_ref()));
    }
}
