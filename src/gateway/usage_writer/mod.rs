//! Durable usage records. A request hands its row (and the reservation it settles) over and
//! awaits its durability before sending its final bytes, so a response that reached the
//! client complete is always recorded, even if the process is killed right after.
//!
//! **SQLite**: durable means journaled (`store::usage_journal`). The request's own thread
//! numbers the entry, moves its hold to "settled" in the hold book and appends it to the
//! journal with one `write`, under one mutex: no thread hand-off on the request path. The
//! `usage-applier` thread writes journaled entries into SQLite, many per transaction: it
//! waits up to 10 ms (`journaled::LINGER`) for more unless a reader asked for everything
//! ([`UsageWriter::settled`]), which is how reads of usage, spend and balance see every
//! answered request. Measured against the alternatives (bench/RESULTS.md): an SQLite commit
//! per batch cost about eleven page writes and met the checkpointer's `fsync`s, and a writer
//! thread between the request and the journal cost two cross-thread wake-ups per request.
//! So the append blocks a runtime worker on purpose (`journaled::Journaled::record_blocking`: about a
//! microsecond; the journal warns when one is slow). At start, journaled entries missing
//! from SQLite are applied before serving, on a thread of their own that start-up awaits
//! without blocking a runtime worker.
//!
//! **PostgreSQL**: durable means committed, by group commit: a writer task batches the rows
//! of many requests into one transaction while the previous one commits. There is no
//! journal: several processes share the database.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::ledger::Ledger;
use crate::store::usage::UsageEntry;
use group_commit::{run_async, Job, QUEUE};
use journaled::{Journaled, MAX_LAG};

mod group_commit;
mod journaled;

/// Pauses before each attempt at a batch: the first at once, then retries.
const ATTEMPT_PAUSES_MS: [u64; 5] = [0, 10, 50, 250, 1000];

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
    /// (`usage_journal::JournalError`). PostgreSQL: a task on the current runtime. Both hand
    /// every applied batch to `feed` (alerts evaluate it off the request path).
    pub async fn start(ledger: &Ledger, feed: Arc<crate::alerts::Feed>) -> anyhow::Result<Self> {
        let inner = match ledger {
            Ledger::InMemory { book, sqlite } => {
                Inner::Sqlite(Journaled::start(sqlite.clone(), book.clone(), feed).await?)
            }
            // Shared holds are rows and leased slices, settled by the batch's transaction.
            Ledger::Shared(pg) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run_async(pg.clone(), rx, feed));
                Inner::Postgres(tx)
            }
        };
        Ok(UsageWriter { inner })
    }

    /// Resolves once the row is durable (see the module's doc).
    pub async fn record(&self, entry: UsageEntry) -> Result<(), RecordError> {
        let u = &entry.usage;
        crate::metrics::gateway_request(crate::metrics::Completion {
            model: u.resolved_model.as_deref(),
            provider: u.provider.as_deref(),
            outcome: u.status.as_str(),
            http_status: u.http_status,
            streamed: u.streamed,
            latency_ms: u.latency_ms,
        });
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

/// Finds the rows the database refuses in a batch, so that one bad row never fails the
/// others: a refused range is split in halves until each refused row stands alone (about
/// 2·log2(n) extra transactions per bad row; none while every row is good). Ranges come out
/// in row order, which the SQLite applier's numbering relies on.
pub(super) struct Bisect {
    todo: Vec<Range<usize>>,
}

impl Bisect {
    pub(super) fn new(rows: usize) -> Self {
        let mut todo = Vec::new();
        if rows > 0 {
            todo.push(0..rows);
        }
        Bisect { todo }
    }

    /// The next range to write.
    pub(super) fn next_range(&mut self) -> Option<Range<usize>> {
        self.todo.pop()
    }

    /// The database refused `r` for its data: true if it was split (its halves come next),
    /// false if it is a single row, the one refused.
    pub(super) fn refused(&mut self, r: Range<usize>) -> bool {
        if r.len() < 2 {
            return false;
        }
        let mid = r.start + r.len() / 2;
        self.todo.push(mid..r.end);
        self.todo.push(r.start..mid);
        true
    }
}

pub(super) fn warn_failed(e: &dyn std::fmt::Display, attempt: usize, rows: usize) {
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
