//! Durable usage records. A request hands its row (and the reservation it settles) over and
//! awaits its durability before sending its final bytes, so a response that reached the
//! client complete is always recorded, even if the process is killed right after.
//!
//! **SQLite**: durable means journaled (`store::usage_journal`). The request's own thread
//! numbers the entry, moves its hold to "settled" in the hold book and appends it to the
//! journal with one `write`, under one mutex: no thread hand-off on the request path. The
//! `usage-applier` thread writes journaled entries into SQLite, many per transaction: it
//! waits up to [`LINGER`] for more unless a reader asked for everything
//! ([`UsageWriter::settled`]), which is how reads of usage, spend and balance see every
//! answered request. Measured against the alternatives (bench/RESULTS.md): an SQLite commit
//! per batch cost about eleven page writes and met the checkpointer's `fsync`s, and a writer
//! thread between the request and the journal cost two cross-thread wake-ups per request.
//! So the append blocks a runtime worker on purpose ([`Journaled::record_blocking`]: about a
//! microsecond; the journal warns when one is slow). At start, journaled entries missing
//! from SQLite are applied before serving, on a thread of their own that start-up awaits
//! without blocking a runtime worker.
//!
//! **PostgreSQL**: durable means committed, by group commit: a writer task batches the rows
//! of many requests into one transaction while the previous one commits. There is no
//! journal: several processes share the database.

use std::ops::Range;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::holds::HoldBook;
use crate::store::usage::UsageEntry;
use crate::store::usage_journal::{Encoded, Journal};
use crate::store::{Backend, Store, StoreError};

/// PostgreSQL: most rows in one transaction.
const MAX_BATCH: usize = 1024;
/// PostgreSQL: requests waiting for the writer before new ones wait for room (backpressure).
const QUEUE: usize = 8192;
/// Pauses before each attempt at a batch: the first at once, then retries.
const ATTEMPT_PAUSES_MS: [u64; 5] = [0, 10, 50, 250, 1000];
/// SQLite: how long the applier lets journaled entries gather before a transaction.
const LINGER: Duration = Duration::from_millis(10);
/// SQLite: most rows the applier writes in one transaction.
const APPLY_MAX: usize = 4096;
/// SQLite: journaled entries the applier may lag behind before new records wait for it.
const MAX_LAG: i64 = 100_000;
/// How long a read waits for the applier before it reads what is there.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct UsageWriter {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Sqlite(Arc<Journaled>),
    Postgres(mpsc::Sender<Job>),
}

#[derive(Debug, thiserror::Error)]
#[error("the usage record could not be written")]
pub struct RecordError;

impl UsageWriter {
    /// Starts the writer. SQLite: first applies what a previous process journaled but did
    /// not apply, then starts the applier thread; fails if the journal cannot be read
    /// (`usage_journal::JournalError`). PostgreSQL: a task on the current runtime.
    pub async fn start(store: Store, holds: Option<Arc<HoldBook>>) -> anyhow::Result<Self> {
        let inner = match store.backend() {
            Backend::Sqlite => {
                Inner::Sqlite(Journaled::start(store, holds.unwrap_or_default()).await?)
            }
            // PostgreSQL keeps holds as rows (`store::ledger`): there is no hold book to settle.
            Backend::Postgres => {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run_async(store, rx));
                Inner::Postgres(tx)
            }
        };
        Ok(UsageWriter { inner })
    }

    /// Resolves once the row is durable (see the module's doc).
    pub async fn record(&self, entry: UsageEntry) -> Result<(), RecordError> {
        crate::metrics::gateway_request(&entry.usage);
        match &self.inner {
            Inner::Sqlite(j) => {
                let behind = j.journaled.load(Ordering::Acquire) - MAX_LAG;
                if *j.applied.borrow() < behind {
                    // Backpressure: the applier cannot keep up (it logs why).
                    j.wait_applied(behind).await;
                }
                j.record_blocking(entry)
            }
            Inner::Postgres(tx) => {
                let (done, wait) = oneshot::channel();
                tx.send(Job {
                    entry: Some(entry),
                    done,
                })
                .await
                .map_err(|_| RecordError)?;
                match wait.await {
                    Ok(true) => Ok(()),
                    _ => Err(RecordError),
                }
            }
        }
    }

    /// Resolves once every request answered so far is in the database (SQLite: applied from
    /// the journal; at once on PostgreSQL). Reads of usage, spend and balance call it first.
    /// Whether it had to wait (what was read before may be stale).
    pub async fn settled(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(j) => j.wait_applied(j.journaled.load(Ordering::Acquire)).await,
            Inner::Postgres(_) => false,
        }
    }

    /// Shutdown: waits until every record handed over so far is in the database, for at
    /// most `limit` (true: it is). SQLite: everything journaled is applied (what is not
    /// stays in the journal, applied at the next start). PostgreSQL: the group-commit queue
    /// has drained (a barrier behind the last record resolves once the writer reaches it).
    pub async fn drain(&self, limit: Duration) -> bool {
        let drained = async {
            match &self.inner {
                Inner::Sqlite(j) => {
                    let target = j.journaled.load(Ordering::Acquire);
                    let mut applied = j.applied.subscribe();
                    j.lock().flush = true;
                    j.wake.notify_one();
                    let caught_up = applied.wait_for(|a| *a >= target).await.is_ok();
                    caught_up
                }
                Inner::Postgres(tx) => {
                    let (done, wait) = oneshot::channel();
                    tx.send(Job { entry: None, done }).await.is_ok() && wait.await.is_ok()
                }
            }
        };
        tokio::time::timeout(limit, drained).await.unwrap_or(false)
    }
}

/// SQLite: the journal, shared by the request threads (appending) and the applier.
struct Journaled {
    state: Mutex<State>,
    /// Wakes the applier: entries arrived, a reader waits, or the writer is gone.
    wake: Condvar,
    book: Arc<HoldBook>,
    /// The last entry number journaled.
    journaled: AtomicI64,
    /// The last entry number applied: every entry up to it is in SQLite.
    applied: watch::Sender<i64>,
}

struct State {
    journal: Journal,
    /// The last entry number given out.
    seq: i64,
    /// Journaled, not yet handed to the applier.
    pending: Vec<UsageEntry>,
    /// A reader waits for everything journaled.
    flush: bool,
}

impl Journaled {
    /// Replays the journal, then starts the `usage-applier` thread.
    async fn start(store: Store, book: Arc<HoldBook>) -> anyhow::Result<Arc<Self>> {
        let path = store.sqlite_file().path.clone();
        // On a thread of its own (its SQLite connection goes with it), awaited without
        // holding a runtime worker: replay reads the files and writes one transaction.
        let (done, replayed) = oneshot::channel();
        let replay = {
            let store = store.clone();
            move || -> anyhow::Result<(Journal, i64)> {
                let (mut journal, records) = Journal::open(&path)?;
                let journaled = records.iter().map(|r| r.seq).max().unwrap_or(0);
                let replayed = store.replay_usage_journal(records)?;
                if replayed > 0 {
                    tracing::info!(
                        rows = replayed,
                        "applied usage a previous process journaled but had not applied"
                    );
                }
                journal.clear()?;
                Ok((journal, journaled.max(store.max_settled_seq()?)))
            }
        };
        std::thread::Builder::new()
            .name("usage-replay".into())
            .spawn(move || {
                let _ = done.send(replay());
            })?;
        let (journal, last) = replayed
            .await
            .map_err(|_| anyhow::anyhow!("usage journal replay panicked"))??;
        book.applied(last);
        let journaled = Arc::new(Journaled {
            state: Mutex::new(State {
                journal,
                seq: last,
                pending: Vec::new(),
                flush: false,
            }),
            wake: Condvar::new(),
            book,
            journaled: AtomicI64::new(last),
            applied: watch::Sender::new(last),
        });
        let applier = Arc::downgrade(&journaled);
        std::thread::Builder::new()
            .name("usage-applier".into())
            .spawn(move || run_applier(&store, &applier))?;
        Ok(journaled)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers, settles and journals one entry, blocking the calling thread (a runtime
    /// worker: see the module's doc) for the journal's mutex and one `write`.
    fn record_blocking(&self, entry: UsageEntry) -> Result<(), RecordError> {
        let applied = *self.applied.borrow();
        let encoded = Encoded::new(std::slice::from_ref(&entry)).map_err(|e| {
            tracing::error!(error = %e, "usage entry not serializable");
            RecordError
        })?;
        let mut s = self.lock();
        let seq = s.seq + 1;
        let settles = entry.reservation.as_ref().map(|r| (r, entry.usage.cost));
        self.book.settling(seq, settles.into_iter());
        if let Err(e) = s.journal.append_encoded_blocking(seq, &encoded, applied) {
            tracing::error!(error = %e, "usage journal write failed");
            if let Some(r) = &entry.reservation {
                self.book.unsettle(seq, std::iter::once(r));
                self.book.release(std::iter::once(r));
            }
            return Err(RecordError);
        }
        s.seq = seq;
        let was_idle = s.pending.is_empty();
        s.pending.push(entry);
        self.journaled.store(seq, Ordering::Release);
        drop(s);
        if was_idle {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until every entry up to `target` is applied (true: it had to); gives up after
    /// [`SETTLE_TIMEOUT`] (the applier is failing, and logs why), so a page shows what is
    /// there rather than hang.
    async fn wait_applied(&self, target: i64) -> bool {
        let mut applied = self.applied.subscribe();
        if *applied.borrow() >= target {
            return false;
        }
        self.lock().flush = true;
        self.wake.notify_one();
        let caught_up = applied.wait_for(|a| *a >= target);
        if tokio::time::timeout(SETTLE_TIMEOUT, caught_up)
            .await
            .is_err()
        {
            tracing::warn!("usage applier is behind; reading without its latest rows");
        }
        true
    }
}

/// The SQLite applier thread: journaled entries into SQLite, many per transaction, retried
/// until they are in (they were answered; the journal keeps them meanwhile). Stops once
/// every [`UsageWriter`] is gone (it holds only a weak reference between rounds).
fn run_applier(store: &Store, shared: &std::sync::Weak<Journaled>) {
    loop {
        let Some(j) = shared.upgrade() else { return };
        let (entries, last) = {
            let s = j.lock();
            let idle = |s: &mut State| s.pending.is_empty() && !s.flush;
            let (s, _) = j
                .wake
                .wait_timeout_while(s, Duration::from_secs(1), idle)
                .unwrap_or_else(|e| e.into_inner());
            if s.pending.is_empty() && !s.flush {
                continue; // Idle: look again whether any writer is left.
            }
            // Let more gather, unless a reader waits.
            let (mut s, _) = j
                .wake
                .wait_timeout_while(s, LINGER, |s| !s.flush && s.pending.len() < APPLY_MAX)
                .unwrap_or_else(|e| e.into_inner());
            s.flush = false;
            (std::mem::take(&mut s.pending), s.seq)
        };
        if !entries.is_empty() {
            crate::metrics::usage_batch("sqlite", entries.len());
            apply_isolating(store, &entries, last);
            j.book.applied(last);
        }
        crate::metrics::usage_journal_lag(j.journaled.load(Ordering::Acquire) - last);
        j.applied
            .send_if_modified(|a| std::mem::replace(a, last) != last);
        drop(j);
        // Between transactions: the only moment no commit can interleave.
        if let Err(e) = store.restart_wal_if_full() {
            tracing::warn!(error = %e, "WAL restart failed");
        }
    }
}

/// PostgreSQL: a request's row and the request waiting for its commit; without a row, a
/// barrier ([`UsageWriter::drain`]) resolved once every earlier job is done.
struct Job {
    entry: Option<UsageEntry>,
    done: oneshot::Sender<bool>,
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

    fn finish(&mut self, recorded: &[bool]) {
        for (done, ok) in self.waiters.drain(..).zip(recorded) {
            let _ = done.send(*ok);
        }
        self.entries.clear();
    }
}

async fn run_async(store: Store, mut rx: mpsc::Receiver<Job>) {
    let late = Late::start(store.clone());
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut batch = Batch::default();
    let mut barriers = Vec::new();
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
        let fates = write_isolating(&store, &batch.entries).await;
        late.keep_failed(&batch.entries, &fates);
        let recorded: Vec<bool> = fates.iter().map(|f| *f == Fate::Recorded).collect();
        batch.finish(&recorded);
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
    store: Store,
}

const LATE_MAX: usize = 100_000;
/// Pause between two attempts at the late rows.
const LATE_PAUSE: Duration = Duration::from_secs(2);

impl Late {
    fn start(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<UsageEntry>(LATE_MAX);
        let late = Late {
            tx,
            store: store.clone(),
        };
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
                let fates = write_isolating(&store, &streams).await;
                waiting.extend(
                    streams
                        .into_iter()
                        .zip(fates)
                        .filter(|(_, f)| *f == Fate::Failed)
                        .map(|(e, _)| e),
                );
                if !answers.is_empty() {
                    match store.settle_unrecorded(&answers).await {
                        Ok(()) => store.leases_settled(&answers, true),
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
                e.usage.cost = 0;
            }
            if let Err(full) = self.tx.try_send(e) {
                tracing::error!("a failed usage row is left to the sweeper: too many rows wait for the database");
                let e = match full {
                    mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
                };
                self.store.leases_settled(std::slice::from_ref(&e), false);
            }
        }
    }
}

/// Finds the rows the database refuses in a batch, so that one bad row never fails the
/// others: a refused range is split in halves until each refused row stands alone (about
/// 2·log2(n) extra transactions per bad row; none while every row is good). Ranges come out
/// in row order, which the SQLite applier's numbering relies on.
struct Bisect {
    todo: Vec<Range<usize>>,
}

impl Bisect {
    fn new(rows: usize) -> Self {
        let mut todo = Vec::new();
        if rows > 0 {
            todo.push(0..rows);
        }
        Bisect { todo }
    }

    /// The next range to write.
    fn next_range(&mut self) -> Option<Range<usize>> {
        self.todo.pop()
    }

    /// The database refused `r` for its data: true if it was split (its halves come next),
    /// false if it is a single row, the one refused.
    fn refused(&mut self, r: Range<usize>) -> bool {
        if r.len() < 2 {
            return false;
        }
        let mid = r.start + r.len() / 2;
        self.todo.push(mid..r.end);
        self.todo.push(r.start..mid);
        true
    }
}

/// PostgreSQL: writes a batch (see [`Bisect`]); what became of each row.
async fn write_isolating(store: &Store, entries: &[UsageEntry]) -> Vec<Fate> {
    let mut fates = vec![Fate::Failed; entries.len()];
    let mut bisect = Bisect::new(entries.len());
    while let Some(r) = bisect.next_range() {
        match write_retrying(store, &entries[r.clone()]).await {
            Ok(()) => {
                // Leased holds leave the book before their requests are answered.
                store.leases_settled(&entries[r.clone()], true);
                fates[r].fill(Fate::Recorded);
            }
            Err(e) if e.is_refused_data() => {
                if !bisect.refused(r.clone()) {
                    crate::metrics::usage_batch_failure("refused");
                    settle_refused(store, &entries[r.start], &e).await;
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
async fn write_retrying(store: &Store, rows: &[UsageEntry]) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match store.write_usage_batch(rows).await {
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
async fn settle_refused(store: &Store, entry: &UsageEntry, e: &StoreError) {
    tracing::error!(error = %e, generation_id = %entry.usage.generation_id,
        "the database refused a usage row; its request fails");
    let mut settlement = entry.clone();
    if !settlement.usage.streamed {
        settlement.usage.cost = 0;
    }
    let settled = store
        .settle_unrecorded(std::slice::from_ref(&settlement))
        .await;
    if let Err(e) = &settled {
        tracing::error!(error = %e, generation_id = %entry.usage.generation_id,
            "hold of a refused usage row not settled; the sweeper releases it");
    }
    store.leases_settled(std::slice::from_ref(&settlement), settled.is_ok());
}

/// SQLite: applies journaled entries numbered `last - n + 1 ..= last` (see [`Bisect`]),
/// retrying until each is in: they were answered, and the journal keeps them meanwhile. An
/// entry the database refuses is applied as its settlement alone (its response was
/// delivered, so it is charged) and logged with its generation id.
fn apply_isolating(store: &Store, entries: &[UsageEntry], last: i64) {
    let first = last - entries.len() as i64 + 1;
    let mut bisect = Bisect::new(entries.len());
    while let Some(r) = bisect.next_range() {
        // The number of the range's last entry: accounts it settles are applied up to it.
        let seq = first + r.end as i64 - 1;
        let rows = &entries[r.clone()];
        let outcome = retry_blocking(rows.len(), || store.apply_usage_blocking(rows, seq));
        if outcome.is_err() && !bisect.refused(r.clone()) {
            crate::metrics::usage_batch_failure("refused");
            tracing::error!(generation_id = %rows[0].usage.generation_id,
                "the database refused a journaled usage row; applying its charge alone");
            let settled = retry_blocking(1, || store.settle_unrecorded_blocking(rows, seq));
            if let Err(e) = settled {
                tracing::error!(error = %e, generation_id = %rows[0].usage.generation_id,
                    "charge of a refused usage row not applied");
            }
        }
    }
}

/// Runs `write` until it succeeds or the database refuses its data (the error returned).
fn retry_blocking(
    rows: usize,
    mut write: impl FnMut() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match write() {
            Ok(()) => return Ok(()),
            Err(e) if e.is_refused_data() => return Err(e),
            Err(e) => {
                warn_failed(&e, attempt, rows);
                let pause = ATTEMPT_PAUSES_MS[attempt.min(ATTEMPT_PAUSES_MS.len() - 1)];
                std::thread::sleep(Duration::from_millis(pause.max(10)));
                attempt += 1;
            }
        }
    }
}

fn warn_failed(e: &dyn std::fmt::Display, attempt: usize, rows: usize) {
    crate::metrics::usage_batch_failure("retry");
    tracing::warn!(error = %e, attempt, rows, "usage batch failed");
}

#[cfg(test)]
mod tests {
    use super::Bisect;

    /// Rows 3 and 7 of 10 are refused: every other row is written, in row order, and the
    /// refused ones come out alone.
    #[test]
    fn bisect_isolates_refused_rows_in_order() {
        let bad = [3, 7];
        let mut bisect = Bisect::new(10);
        let (mut written, mut refused) = (Vec::new(), Vec::new());
        while let Some(r) = bisect.next_range() {
            if r.clone().any(|i| bad.contains(&i)) {
                if !bisect.refused(r.clone()) {
                    refused.push(r.start);
                }
            } else {
                written.extend(r);
            }
        }
        assert_eq!(refused, bad);
        assert_eq!(written, [0, 1, 2, 4, 5, 6, 8, 9]);
        assert!(Bisect::new(0).next_range().is_none());
    }
}
