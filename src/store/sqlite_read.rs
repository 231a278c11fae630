//! In-thread SQLite reads for the gateway's hot path.
//!
//! sqlx runs every SQLite connection on a thread of its own, so each query is a hop to that
//! thread and back (two context switches, several wake-ups): on the gateway's per-request key
//! read that hop cost more CPU than everything else the request does. Here each thread that
//! serves requests keeps its own read-only connection (rusqlite, the same SQLite library sqlx
//! links) and runs the one indexed lookup synchronously: microseconds, and in WAL mode a
//! reader never waits for the writer. Only this read takes the shortcut; everything else
//! goes through sqlx.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

thread_local! {
    /// One read-only connection per database file per thread.
    static CONNECTIONS: RefCell<HashMap<PathBuf, Connection>> = RefCell::new(HashMap::new());
}

/// Runs `f` with this thread's read-only connection to `path`.
pub(crate) fn with_connection<T>(
    path: &Path,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    CONNECTIONS.with(|cell| {
        let mut conns = cell.borrow_mut();
        let conn = match conns.get(path) {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                c.busy_timeout(Duration::from_secs(5))?;
                c.pragma_update(None, "cache_size", -2000)?;
                conns.entry(path.to_owned()).or_insert(c)
            }
        };
        f(conn)
    })
}

/// One row by a query with one text parameter, mapped by `map`.
pub(crate) fn query_one<T>(
    path: &Path,
    sql: &str,
    param: &str,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    with_connection(path, |c| {
        c.prepare_cached(sql)?.query_row([param], map).optional()
    })
}
