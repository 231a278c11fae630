//! SQLite: the usage journal's writer side. A request's entry is numbered, its hold settled in
//! the hold book and the entry appended to the journal, on the request's own thread; the
//! `usage-applier` thread moves journaled entries into SQLite (see the parent module).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::{warn_failed, Bisect, RecordError, ATTEMPT_PAUSES_MS};
use crate::gateway::holds::HoldBook;
use crate::store::usage::UsageEntry;
use crate::store::usage_journal::{Encoded, Journal};
use crate::store::{SqliteStore, StoreError};

/// How long the applier lets journaled entries gather before a transaction.
const LINGER: Duration = Duration::from_millis(10);
/// Most rows the applier writes in one transaction.
const APPLY_MAX: usize = 4096;
/// Journaled entries the applier may lag behind before new records wait for it.
pub(super) const MAX_LAG: i64 = 100_000;
/// How long a read waits for the applier before it reads what is there.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite: the journal, shared by the request threads (appending) and the applier.
pub(super) struct Journaled {
    state: Mutex<State>,
    /// Wakes the applier: entries arrived, a reader waits, or the writer is gone.
    pub wake: Condvar,
    book: Arc<HoldBook>,
    /// The last entry number journaled.
    pub journaled: AtomicI64,
    /// The last entry number applied: every entry up to it is in SQLite.
    pub applied: watch::Sender<i64>,
}

pub(super) struct State {
    journal: Journal,
    /// The last entry number given out.
    seq: i64,
    /// Journaled, not yet handed to the applier.
    pending: Vec<UsageEntry>,
    /// A reader waits for everything journaled.
    pub flush: bool,
}

impl Journaled {
    /// Replays the journal, then starts the `usage-applier` thread.
    pub async fn start(
        store: SqliteStore,
        book: Arc<HoldBook>,
        feed: Arc<crate::alerts::Feed>,
    ) -> anyhow::Result<Arc<Self>> {
        let path = store.file.path.clone();
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
            .spawn(move || run_applier(&store, &applier, &feed))?;
        Ok(journaled)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers, settles and journals one entry, blocking the calling thread (a runtime
    /// worker: see the module's doc) for the journal's mutex and one `write`.
    pub fn record_blocking(&self, entry: UsageEntry) -> Result<(), RecordError> {
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
    pub async fn wait_applied(&self, target: i64) -> bool {
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
fn run_applier(
    store: &SqliteStore,
    shared: &std::sync::Weak<Journaled>,
    feed: &crate::alerts::Feed,
) {
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
            feed.applied(&entries);
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

/// SQLite: applies journaled entries numbered `last - n + 1 ..= last` (see [`Bisect`]),
/// retrying until each is in: they were answered, and the journal keeps them meanwhile. An
/// entry the database refuses is applied as its settlement alone (its response was
/// delivered, so it is charged) and logged with its generation id.
fn apply_isolating(store: &SqliteStore, entries: &[UsageEntry], last: i64) {
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
