//! All SQL lives under this module: a table's queries in the file named for it (`accounts`,
//! `keys`, `sessions`, `secrets`, `usage`, `email_tokens`), except the statements that hold and settle money
//! across tables in one transaction (`ledger`, `lease_book`, `usage_batch`). The same SQL text (with `$1…`
//! placeholders and portable syntax) runs on SQLite and PostgreSQL through sqlx's native
//! drivers: `on_read!` / `on_write!` expand a body once per backend, so every query is
//! type-checked against both drivers' encode/decode rules. (sqlx's `Any` driver was rejected:
//! it is slower on the hot path and cannot decode several column types.)
//!
//! SQLite gets two pools: many readers, and exactly one writer connection. SQLite admits one
//! writer at a time anyway; queueing writers in the pool (fair, async) instead of in SQLite's
//! sleeping busy handler keeps tail latency flat under load. The hot paths bypass sqlx on
//! SQLite (`sqlite_direct`): the gateway's key read, and the usage batch, whose connection is
//! the only other writer (it begins `IMMEDIATE`, so it waits in the busy handler at worst
//! for one dashboard write).

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod email_tokens;
mod health;
pub mod idempotency;
pub mod key_secrets;
pub mod keys;
pub mod lease_book;
pub mod ledger;
pub mod management_keys;
pub mod members;
pub(crate) mod pages;
mod rate_limits;
pub mod secrets;
pub mod sessions;
mod sqlite_direct;
pub mod usage;
mod usage_batch;
pub mod usage_partitions;
pub use usage_batch::LastUseWrites;
pub mod usage_journal;
pub mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; the caller turns it into a form error.
    #[error("already exists")]
    Conflict,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A database task run on a blocking thread panicked or was cancelled.
    #[error("blocking database task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The database refused the data itself (a value it cannot hold, a constraint or trigger
    /// it enforces): retrying the same rows fails the same way, whereas a lost connection or
    /// a timeout may pass on the next attempt. PostgreSQL SQLSTATE classes 22 (data
    /// exception, e.g. NUL in `text`) and 23 (integrity constraint); SQLite's constraint,
    /// too-big and mismatch results.
    pub fn is_refused_data(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Db(sqlx::Error::Database(d)) => {
                match d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                    Some(pg) => pg.code().starts_with("22") || pg.code().starts_with("23"),
                    // SQLite: the primary result code (the low byte of the extended one).
                    None => d
                        .code()
                        .and_then(|c| c.parse::<i32>().ok())
                        .is_some_and(|c| {
                            matches!(
                                c & 0xff,
                                rusqlite::ffi::SQLITE_CONSTRAINT
                                    | rusqlite::ffi::SQLITE_TOOBIG
                                    | rusqlite::ffi::SQLITE_MISMATCH
                            )
                        }),
                }
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch
            ),
            StoreError::Conflict => true,
            _ => false,
        }
    }
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
pub(crate) fn conflict_on_unique(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Db(e),
    }
}

/// Opens `path` for writing, creating it with mode 0600 (whatever the umask) if missing, and
/// never truncating: for the SQLite file, its lock file and the usage journal, which hold
/// account data and must be readable by the service's user only. Existing files keep their
/// mode (an operator may have chosen another one).
pub fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// The engine-specific side of a store ([`Store::backend`]): what only that engine can do.
#[derive(Clone)]
pub enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// What a store runs on, with what only that engine has: no field that makes sense for one
/// backend only, and no path that assumes a backend without matching on it.
#[derive(Clone)]
pub(crate) enum Engine {
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
        /// The database file, for in-thread access (`sqlite_direct`).
        file: Arc<sqlite_direct::SqliteFile>,
    },
    Postgres {
        pool: PgPool,
        /// This process's id for the reservations and leases it holds (see `ledger`).
        instance: i64,
        /// This process's budget leases (`lease_book`); None with `LOWROUTER_LEASES=off` (a
        /// reservation row per request, for comparison).
        leases: Option<Arc<lease_book::LeaseBook>>,
        /// Connections whose commits do not wait for the WAL flush, for the per-key rate
        /// limit counters only (`rate_limits`).
        counters: PgPool,
        /// The gateway's key reads, shared by concurrent requests (`keys::group_read`).
        key_reads: Arc<keys::group_read::KeyReads>,
        /// This process's rollup shard: a small number no other live process has
        /// ([`pick_rollup_shard`]; migration 0019).
        shard: i64,
        /// A connection holding the session advisory lock on `instance` (and on `shard`)
        /// for as long as the process lives; PostgreSQL drops them the moment it dies.
        _liveness: Arc<sqlx::PgConnection>,
    },
}

#[derive(Clone)]
pub struct Store {
    pub(crate) engine: Engine,
}

/// The SQLite side of a store, which only an SQLite store hands out ([`Store::backend`]): the
/// usage journal's applier and replay write through it, on the calling thread.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) file: Arc<sqlite_direct::SqliteFile>,
}

/// The PostgreSQL side of a store, which only a PostgreSQL store hands out
/// ([`Store::backend`]): holds shared by every process (`ledger`, `lease_book`).
#[derive(Clone)]
pub struct PgStore {
    pub(crate) store: Store,
    pub(crate) pool: PgPool,
    /// See `Engine::Postgres::counters`.
    pub(crate) counters: PgPool,
    pub(crate) instance: i64,
    pub(crate) leases: Option<Arc<lease_book::LeaseBook>>,
    /// See `Engine::Postgres::shard`.
    pub(crate) shard: i64,
}

/// Runs `$body` with `$pool` bound to the pool for reads, on whichever backend is in use.
macro_rules! on_read {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.engine {
            $crate::store::Engine::Sqlite { read: $pool, .. } => $body,
            $crate::store::Engine::Postgres { pool: $pool, .. } => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to the pool for writes.
macro_rules! on_write {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.engine {
            $crate::store::Engine::Sqlite { write: $pool, .. } => $body,
            $crate::store::Engine::Postgres { pool: $pool, .. } => $body,
        }
    };
}
pub(crate) use {on_read, on_write};

impl Store {
    /// Connects (creating an SQLite file if missing) and runs the backend's migrations.
    /// Long on purpose: each backend's pool options side by side, with why each is set.
    pub async fn connect(url: &str) -> Result<Store> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                // No ping before each use: a broken connection fails its query and is
                // replaced; the ping would cost a round trip on every request.
                .test_before_acquire(false)
                .max_connections(32)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                // No JIT: PostgreSQL compiles any query whose estimate passes
                // `jit_above_cost`, such as an export page over a partitioned usage table
                // estimated at millions of rows, and spent ~330 ms compiling pages that run
                // in 40 ms (bench/RESULTS.md, issue 28). Short queries never gain from it.
                .connect_with(PgConnectOptions::from_str(url)?.options([("jit", "off")]))
                .await?;
            // Rate-limit counters are not money and are rebuilt within a minute: a database
            // crash may lose their last few hundred milliseconds, and in exchange a limited
            // key's three counter commits per request stop queueing on the WAL flush
            // (bench/RESULTS.md, 17:15: a hot key with limits went from 683 to 1,324 req/s).
            let counters = PgPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(16)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(
                    PgConnectOptions::from_str(url)?.options([("synchronous_commit", "off")]),
                );
            let instance = i64::from(rand::random::<u32>() >> 1);
            let mut liveness = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
            sqlx::query("select pg_advisory_lock($1, $2::int4)")
                .bind(ledger::LIVENESS_LOCK_CLASS)
                .bind(instance)
                .execute(&mut liveness)
                .await?;
            let shard = pick_rollup_shard(&mut liveness, instance).await?;
            Store {
                engine: Engine::Postgres {
                    counters,
                    key_reads: Arc::new(keys::group_read::KeyReads::start(pool.clone())),
                    pool,
                    instance,
                    leases: (std::env::var("LOWROUTER_LEASES").as_deref() != Ok("off"))
                        .then(Arc::default),
                    shard,
                    _liveness: Arc::new(liveness),
                },
            }
        } else {
            // WAL with synchronous=NORMAL: a commit survives a killed process (it is in the
            // WAL, in the OS page cache); only power loss can drop the last commits.
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Page cache per connection, in KiB: nine connections stay well inside the
                // memory budget (the OS page cache holds the rest of the file).
                .pragma("cache_size", "-4000");
            let path = opts.get_filename().to_owned();
            // Created 0600 before SQLite opens it (SQLite would make it 0644 less the umask);
            // SQLite gives the -wal and -shm files the database file's mode.
            if path.as_os_str() != ":memory:" && !path.exists() {
                create_private(&path).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
            }
            // No ping before each use (a round trip to the connection's thread). No automatic
            // checkpoint inside commits: `Store::start_checkpointer` runs beside the writer instead.
            let write = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.clone().pragma("wal_autocheckpoint", "0"))
                .await?;
            // The writer creates the file; migrate before readers open so they never see a
            // half-made schema.
            sqlx::migrate!("./migrations/sqlite").run(&write).await?;
            let read = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(8)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts.read_only(true))
                .await?;
            let store = Store {
                engine: Engine::Sqlite {
                    read,
                    write,
                    file: Arc::new(sqlite_direct::SqliteFile::new(path)),
                },
            };
            store.backfill_name_skeletons().await?;
            store.backfill_key_secrets().await?;
            store.backfill_public_ids().await?;
            return Ok(store);
        };
        store.migrate().await?;
        store.backfill_name_skeletons().await?;
        store.backfill_key_secrets().await?;
        store.backfill_public_ids().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        match &self.engine {
            Engine::Sqlite { write, .. } => {
                sqlx::migrate!("./migrations/sqlite").run(write).await?
            }
            Engine::Postgres { pool, .. } => {
                sqlx::migrate!("./migrations/postgres").run(pool).await?
            }
        }
        Ok(())
    }

    /// SQLite: starts moving committed WAL pages into the database file, off the commit
    /// path, every 50 ms (the server calls this once; a no-op on PostgreSQL).
    pub fn start_checkpointer(&self) {
        if let Engine::Sqlite { file, .. } = &self.engine {
            sqlite_direct::spawn_checkpointer(file.clone(), Duration::from_millis(50));
        }
    }

    pub fn backend(&self) -> Backend {
        match &self.engine {
            Engine::Sqlite { file, .. } => Backend::Sqlite(SqliteStore { file: file.clone() }),
            Engine::Postgres {
                pool,
                counters,
                instance,
                leases,
                shard,
                ..
            } => Backend::Postgres(PgStore {
                store: self.clone(),
                pool: pool.clone(),
                counters: counters.clone(),
                instance: *instance,
                leases: leases.clone(),
                shard: *shard,
            }),
        }
    }

    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite { read, write, .. } => {
                read.close().await;
                write.close().await;
            }
            Engine::Postgres { pool, counters, .. } => {
                counters.close().await;
                pool.close().await
            }
        }
    }
}

/// Advisory-lock class of the rollup shards (beside `ledger::LIVENESS_LOCK_CLASS`).
const SHARD_LOCK_CLASS: i32 = 0x4c52_5348; // "LRSH"
/// Shards tried at start; with more live processes than this, the rest share shards
/// (their batches may then queue on each other's rollup rows: slower, never wrong).
const SHARDS: i64 = 64;

/// PostgreSQL: the first rollup shard no live process holds, locked on the liveness
/// connection for the life of the process. Each process adds to rollup rows of its own shard,
/// so two processes' usage batches never update the same rollup row (migration 0019).
async fn pick_rollup_shard(liveness: &mut sqlx::PgConnection, instance: i64) -> Result<i64> {
    for shard in 0..SHARDS {
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1, $2::int4)")
            .bind(SHARD_LOCK_CLASS)
            .bind(shard as i32)
            .fetch_one(&mut *liveness)
            .await?;
        if got {
            return Ok(shard);
        }
    }
    Ok(SHARDS + instance % SHARDS)
}
