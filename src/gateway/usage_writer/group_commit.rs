//! PostgreSQL: group commit. A writer task batches the rows of many requests into one
//! transaction while the previous one commits; a row the database refuses is isolated
//! ([`super::Bisect`]) and rows that fail through an outage are finished later ([`Late`]).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{warn_failed, Bisect, ATTEMPT_PAUSES_MS};
use crate::domain::Credits;
use crate::store::usage::UsageEntry;
use crate::store::{LastUseWrites, PgStore, StoreError};

/// Most rows in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer before new ones wait for room (backpressure).
pub(super) const QUEUE: usize = 8192;

/// PostgreSQL: a request's row and the request waiting for its commit; without a row, a
/// barrier ([`UsageWriter::drain`]) resolved once every earlier job is done.
pub(super) struct Job {
    pub entry: Option<UsageEntry>,
    pub done: oneshot::Sender<bool>,
}

/// The jobs of one batch, split into rows and the requests waiting on them.
#[derive(Default)]
struct Batch {
    entries: Vec<UsageEntry>,
    waiters: Vec<oneshot::Sender<bool>>,
}

impl Batch {
    fn push(&mut self, entry: UsageEntry, done: oneshot::Sender<bool>) {
        self.entries.push(entry);
        self.waiters.push(done);
    }

    /// Tells each waiting request whether its row was recorded (the rows stay, for the
    /// alerts' feed; the caller clears them).
    fn answer(&mut self, recorded: &[bool]) {
        for (done, ok) in self.waiters.drain(..).zip(recorded) {
            let _ = done.send(*ok);
        }
    }
}

pub(super) async fn run_async(
    pg: PgStore,
    mut rx: mpsc::Receiver<Job>,
    feed: std::sync::Arc<crate::alerts::Feed>,
) {
    let late = Late::start(pg.clone());
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut batch = Batch::default();
    let mut barriers = Vec::new();
    let mut last_use = LastUseWrites::default();
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        for job in jobs.drain(..) {
            match job.entry {
                Some(entry) => batch.push(entry, job.done),
                None => barriers.push(job.done),
            }
        }
        if !batch.entries.is_empty() {
            crate::metrics::usage_batch("postgres", batch.entries.len());
        }
        let fates = write_isolating(&pg, &batch.entries, &mut last_use).await;
        late.keep_failed(&batch.entries, &fates);
        let recorded: Vec<bool> = fates.iter().map(|f| *f == Fate::Recorded).collect();
        // The requests are answered first; alerts read the batch afterwards.
        batch.answer(&recorded);
        if fates.iter().all(|f| *f == Fate::Recorded) {
            feed.applied(&batch.entries);
        } else {
            let written: Vec<UsageEntry> = batch
                .entries
                .iter()
                .zip(&recorded)
                .filter(|(_, r)| **r)
                .map(|(e, _)| e.clone())
                .collect();
            feed.applied(&written);
        }
        batch.entries.clear();
        for done in barriers.drain(..) {
            let _ = done.send(true);
        }
    }
}

/// What became of a row of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Recorded,
    /// The database refused its data: settled without it ([`settle_refused`]).
    Refused,
    /// The database could not be reached or failed otherwise, through every retry.
    Failed,
}

/// PostgreSQL: rows whose record failed through every retry (the database unreachable).
/// Their requests got their error, but their holds are still in place, and a stream's
/// content was already delivered. So they are finished later, in the background, once the
/// database takes writes again: a stream's row is written (released and charged, as if on
/// time: a delivered stream is paid for), a complete answer's hold is released uncharged
/// (its body was withheld). Bounded: beyond [`LATE_MAX`] waiting rows, the newest are
/// logged and left to the sweeper (which releases holds uncharged).
struct Late {
    tx: mpsc::Sender<UsageEntry>,
    pg: PgStore,
}

const LATE_MAX: usize = 100_000;
/// Pause between two attempts at the late rows.
const LATE_PAUSE: Duration = Duration::from_secs(2);

impl Late {
    fn start(pg: PgStore) -> Self {
        let (tx, mut rx) = mpsc::channel::<UsageEntry>(LATE_MAX);
        let late = Late { tx, pg: pg.clone() };
        tokio::spawn(async move {
            let mut waiting: Vec<UsageEntry> = Vec::new();
            loop {
                if waiting.is_empty() {
                    match rx.recv().await {
                        Some(e) => waiting.push(e),
                        None => return,
                    }
                }
                while let Ok(e) = rx.try_recv() {
                    waiting.push(e);
                }
                tokio::time::sleep(LATE_PAUSE).await;
                let (streams, answers): (Vec<_>, Vec<_>) =
                    waiting.drain(..).partition(|e| e.usage.streamed);
                let fates = write_isolating(&pg, &streams, &mut LastUseWrites::default()).await;
                waiting.extend(
                    streams
                        .into_iter()
                        .zip(fates)
                        .filter(|(_, f)| *f == Fate::Failed)
                        .map(|(e, _)| e),
                );
                if !answers.is_empty() {
                    match pg.store.settle_unrecorded(&answers).await {
                        Ok(()) => pg.leases_settled(&answers, true),
                        Err(e) => {
                            tracing::warn!(error = %e, rows = answers.len(), "holds of failed answers not released yet");
                            waiting.extend(answers);
                        }
                    }
                }
                if waiting.is_empty() {
                    tracing::info!("usage rows that had failed are settled");
                }
            }
        });
        late
    }

    /// Keeps the rows that failed (a complete answer's as a release: cost 0).
    fn keep_failed(&self, entries: &[UsageEntry], fates: &[Fate]) {
        for (e, _) in entries
            .iter()
            .zip(fates)
            .filter(|(_, f)| **f == Fate::Failed)
        {
            let mut e = e.clone();
            if !e.usage.streamed {
                e.usage.cost = Credits::ZERO;
            }
            if let Err(full) = self.tx.try_send(e) {
                tracing::error!("a failed usage row is left to the sweeper: too many rows wait for the database");
                let e = match full {
                    mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
                };
                self.pg.leases_settled(std::slice::from_ref(&e), false);
            }
        }
    }
}

/// PostgreSQL: writes a batch (see [`Bisect`]); what became of each row.
async fn write_isolating(
    pg: &PgStore,
    entries: &[UsageEntry],
    last_use: &mut LastUseWrites,
) -> Vec<Fate> {
    let mut fates = vec![Fate::Failed; entries.len()];
    let mut bisect = Bisect::new(entries.len());
    while let Some(r) = bisect.next_range() {
        match write_retrying(pg, &entries[r.clone()], last_use).await {
            Ok(()) => {
                // Leased holds leave the book before their requests are answered.
                pg.leases_settled(&entries[r.clone()], true);
                fates[r].fill(Fate::Recorded);
            }
            Err(e) if e.is_refused_data() => {
                if !bisect.refused(r.clone()) {
                    crate::metrics::usage_batch_failure("refused");
                    settle_refused(pg, &entries[r.start], &e).await;
                    fates[r.start] = Fate::Refused;
                }
            }
            Err(e) => {
                crate::metrics::usage_batch_failure("abandoned");
                tracing::error!(error = %e, rows = r.len(), "usage batch failed for good")
            }
        }
    }
    fates
}

/// Writes rows, retrying after [`ATTEMPT_PAUSES_MS`] unless the database refused their data.
async fn write_retrying(
    pg: &PgStore,
    rows: &[UsageEntry],
    last_use: &mut LastUseWrites,
) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match pg.write_usage_batch(rows, last_use).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_refused_data() => return Err(e),
            Err(e) => {
                warn_failed(&e, attempt, rows.len());
                attempt += 1;
                match ATTEMPT_PAUSES_MS.get(attempt) {
                    Some(pause) => tokio::time::sleep(Duration::from_millis(*pause)).await,
                    None => return Err(e),
                }
            }
        }
    }
}

/// PostgreSQL: a row the database can never store. Its request fails with a 5xx; its hold
/// is settled at once without the row: released, and charged when the response was
/// already delivered (a stream's content goes out before its usage record; a complete
/// body is withheld instead, so it costs nothing).
async fn settle_refused(pg: &PgStore, entry: &UsageEntry, e: &StoreError) {
    tracing::error!(error = %e, generation_id = %entry.usage.generation_id,
        "the database refused a usage row; its request fails");
    let mut settlement = entry.clone();
    if !settlement.usage.streamed {
        settlement.usage.cost = Credits::ZERO;
    }
    let settled = pg
        .store
        .settle_unrecorded(std::slice::from_ref(&settlement))
        .await;
    if let Err(e) = &settled {
        tracing::error!(error = %e, generation_id = %entry.usage.generation_id,
            "hold of a refused usage row not settled; the sweeper releases it");
    }
    pg.leases_settled(std::slice::from_ref(&settlement), settled.is_ok());
}
