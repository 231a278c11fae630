//! Direct (in-thread, rusqlite) SQLite access where sqlx's per-connection thread costs too
//! much: the gateway's per-request key read, the usage batch (`usage_batch`), and the WAL
//! checkpointer.
//!
//! sqlx runs every SQLite connection on a thread of its own, so each query is a hop to that
//! thread and back (two context switches, several wake-ups): on the gateway's per-request key
//! read that hop cost more CPU than everything else the request does. Here each thread that
//! serves requests keeps its own read-only connection (rusqlite, the same SQLite library sqlx
//! links) and runs the one indexed lookup synchronously: microseconds, and in WAL mode a
//! reader never waits for the writer. So the key read blocks a runtime worker on purpose
//! ([`query_one_blocking`], called by `Store::gateway_key`). The usage batch runs on the usage applier's
//! thread through a read-write connection of that thread. Everything else goes through sqlx
//! (and WAL checkpoints, below, run on a connection of their own).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

thread_local! {
    /// One read-only connection per database file per thread.
    static CONNECTIONS: RefCell<HashMap<PathBuf, Connection>> = RefCell::new(HashMap::new());
    /// One read-write connection per database file per thread that writes usage.
    static WRITERS: RefCell<HashMap<PathBuf, Connection>> = RefCell::new(HashMap::new());
}

/// This thread's connection to `path` in `cache`, opened by `open` the first time.
fn cached<'a>(
    cache: &'a mut HashMap<PathBuf, Connection>,
    path: &Path,
    open: impl FnOnce(&Path) -> rusqlite::Result<Connection>,
) -> rusqlite::Result<&'a mut Connection> {
    if !cache.contains_key(path) {
        let c = open(path)?;
        cache.insert(path.to_owned(), c);
    }
    Ok(cache.get_mut(path).expect("inserted above"))
}

/// Runs `f` with this thread's read-write connection to `path`. Its settings match sqlx's
/// writer (`Store::connect`): WAL with `synchronous=NORMAL`, foreign keys, and no automatic
/// checkpoint inside commits.
pub(crate) fn with_writer<T>(
    path: &Path,
    f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    WRITERS.with(|cell| {
        let mut conns = cell.borrow_mut();
        f(cached(&mut conns, path, |path| {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )?;
            c.busy_timeout(Duration::from_secs(10))?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            c.pragma_update(None, "foreign_keys", true)?;
            c.pragma_update(None, "wal_autocheckpoint", 0)?;
            c.pragma_update(None, "cache_size", -4000)?;
            Ok(c)
        })?)
    })
}

/// Runs `f` with this thread's read-only connection to `path`.
pub(crate) fn with_connection<T>(
    path: &Path,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    CONNECTIONS.with(|cell| {
        let mut conns = cell.borrow_mut();
        f(cached(&mut conns, path, |path| {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )?;
            c.busy_timeout(Duration::from_secs(5))?;
            c.pragma_update(None, "cache_size", -2000)?;
            Ok(c)
        })?)
    })
}

/// One row by a query with one text parameter, mapped by `map`, on the calling thread
/// (which it blocks: callers on the async runtime do so on purpose, see the module's doc).
pub(crate) fn query_one_blocking<T>(
    path: &Path,
    sql: &str,
    param: &str,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    with_connection(path, |c| {
        c.prepare_cached(sql)?.query_row([param], map).optional()
    })
}

/// Frames (pages) the WAL may hold before it is started over: 16 MiB.
const WAL_BOUND_FRAMES: i64 = 4096;

/// An SQLite database file and the state of its WAL.
///
/// Under steady writes the WAL never restarts by itself: SQLite starts it over only when a
/// write begins after a checkpoint has copied every frame, and a checkpoint running beside the
/// writer never catches up with it. Left alone it grew by ~16 MB/s under load (800 MB in a
/// minute's benchmark) and commits slowed down as they wrote into ever new file space. So the
/// checkpointer raises `wal_full` when the WAL is over its bound, and the usage applier,
/// between two of its batches, runs a `RESTART` checkpoint: no commit can interleave there,
/// the frames left to copy are the few since the last passive checkpoint, and the next commit
/// writes from the start of the file again.
pub(crate) struct SqliteFile {
    pub(crate) path: PathBuf,
    wal_full: AtomicBool,
}

impl SqliteFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        SqliteFile {
            path,
            wal_full: AtomicBool::new(false),
        }
    }

    /// Called with the WAL's size in frames after each passive checkpoint.
    fn note_wal_frames(&self, frames: i64) {
        if frames > WAL_BOUND_FRAMES {
            self.wal_full.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn restart_wal_if_full(&self) -> rusqlite::Result<()> {
        if !self.wal_full.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        with_writer(&self.path, |c| {
            c.query_row("pragma wal_checkpoint(restart)", [], |_| Ok(()))
        })
    }
}

/// Copies the WAL into the database file every `every`, without blocking readers or the
/// writer, on a thread and connection of its own, for as long as the process lives. The
/// writer's automatic checkpoint is off (see `Store::connect`): run inside a commit, its
/// fsync stalled every request waiting on that commit.
pub(crate) fn spawn_checkpointer(file: Arc<SqliteFile>, every: Duration) {
    let run = move || -> rusqlite::Result<()> {
        let c = Connection::open_with_flags(
            &file.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(Duration::from_secs(5))?;
        loop {
            std::thread::sleep(every);
            // (busy, frames in the WAL, frames copied)
            match c.query_row("pragma wal_checkpoint(passive)", [], |r| r.get::<_, i64>(1)) {
                Ok(frames) => file.note_wal_frames(frames),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        }
    };
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            if let Err(e) = run() {
                tracing::error!(error = %e, "WAL checkpointer stopped");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the WAL checkpointer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(path: &Path, suffix: &str) -> u64 {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::metadata(p).map_or(0, |m| m.len())
    }

    /// No checkpoint runs here but the one under test (the writer's automatic checkpoint is
    /// off), so the WAL file only stays the same size if a write started it over.
    #[test]
    fn a_full_wal_is_started_over_between_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteFile::new(dir.path().join("wal.db"));
        // Created as `Store::connect` does before any direct connection opens it.
        Connection::open(&file.path)
            .unwrap()
            .execute_batch("pragma journal_mode = wal; create table t (x blob)")
            .unwrap();
        let write = |n: usize| {
            with_writer(&file.path, |c| {
                for _ in 0..n {
                    c.execute("insert into t values (zeroblob(8000))", [])?;
                }
                Ok(())
            })
            .unwrap()
        };
        write(200);
        let wal = size(&file.path, "-wal");
        assert!(wal > 200 * 8000, "the rows are in the WAL: {wal} bytes");

        // Under its bound nothing happens: the WAL goes on growing.
        file.note_wal_frames(WAL_BOUND_FRAMES);
        file.restart_wal_if_full().unwrap();
        write(1);
        let grown = size(&file.path, "-wal");
        assert!(grown > wal, "{grown} > {wal}");

        // Over it, everything is copied into the database and the next write goes to the
        // start of the WAL file instead of its end.
        file.note_wal_frames(WAL_BOUND_FRAMES + 1);
        file.restart_wal_if_full().unwrap();
        assert!(
            !file.wal_full.load(Ordering::Relaxed),
            "the flag is cleared"
        );
        assert!(
            size(&file.path, "") > 200 * 8000,
            "the rows are in the database file"
        );
        write(1);
        assert_eq!(size(&file.path, "-wal"), grown, "the WAL started over");
    }
}
