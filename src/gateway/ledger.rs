//! Where the gateway's holds live, behind one type so handlers never branch on the backend.
//!
//! - **In memory** (SQLite): exactly one process serves the database file, so holds of
//!   requests in flight live in this process's [`HoldBook`] and the database keeps only
//!   settled amounts (see `gateway::holds`).
//! - **Shared** (PostgreSQL): several processes serve one database, so holds are rows or
//!   slices of budget leases every process sees (see `store::ledger`, `store::lease_book`).

use std::sync::Arc;

use super::holds::{HoldBook, Outstanding};
use crate::domain::{Credits, WorkspaceId};
use crate::store::keys::GatewayKey;
use crate::store::ledger::{Reservation, ReserveError};
use crate::store::{Backend, PgStore, SqliteStore, Store};

#[derive(Clone)]
pub enum Ledger {
    InMemory {
        book: Arc<HoldBook>,
        /// The usage journal's applier settles the book through this (`usage_writer`).
        sqlite: SqliteStore,
    },
    Shared(PgStore),
}

impl Ledger {
    /// The ledger `store`'s engine calls for.
    pub fn for_store(store: &Store) -> Ledger {
        match store.backend() {
            Backend::Sqlite(sqlite) => Ledger::InMemory {
                book: Arc::default(),
                sqlite,
            },
            Backend::Postgres(pg) => Ledger::Shared(pg),
        }
    }

    /// Holds `amount` against the key's limits and its account's spendable balance, or says
    /// which one refused.
    pub async fn reserve(
        &self,
        key: &GatewayKey,
        amount: Credits,
        now_ms: i64,
    ) -> Result<Reservation, ReserveError> {
        match self {
            Ledger::InMemory { book, .. } => book.reserve(key, amount, now_ms),
            Ledger::Shared(pg) => pg.reserve(&key.key, amount, now_ms).await,
        }
    }

    /// What a key read does not include yet: holds in flight and charges settled after it
    /// (in memory only; shared holds and leased slices are in the rows already).
    pub fn outstanding(&self, key: &GatewayKey, now_ms: i64) -> Outstanding {
        match self {
            Ledger::InMemory { book, .. } => book.outstanding(key, now_ms),
            Ledger::Shared(_) => Outstanding::default(),
        }
    }

    /// What was charged to the key's account since `key` was read, `charged` being this
    /// request's own charge: in memory, every charge the book knows that read missed (this
    /// request's among them, once recorded); shared, this request's charge.
    pub fn charged_since_read(&self, key: &GatewayKey, charged: Credits) -> Credits {
        match self {
            Ledger::InMemory { book, .. } => {
                book.settled_after(key.key.account_id, key.settled_seq)
            }
            Ledger::Shared(_) => charged,
        }
    }

    /// Gives back this process's unused leased slices of the account, so a read of its
    /// balance shows none of them as reserved. Whether anything went back.
    pub async fn return_account_leases(&self, account_id: WorkspaceId) -> bool {
        match self {
            Ledger::InMemory { .. } => false,
            Ledger::Shared(pg) => pg.return_account_leases(account_id.0).await,
        }
    }
}
