//! The usage journal (SQLite): append-only files next to the database that make a usage
//! record durable with one `write` instead of one SQLite commit.
//!
//! A request's answer waits until its usage entry (with the hold it settles) is in the
//! journal. A write that returned is in the kernel's page cache, so it survives the process
//! being killed, which is the same promise a WAL commit with `synchronous=NORMAL` makes;
//! neither survives power loss unflushed. The usage applier then writes journaled entries
//! into SQLite in large transactions, and at start [`Journal::open`] returns every record
//! still in the files, so the entries missing from `usage` are applied before serving
//! (`usage.generation_id` is unique, and an entry's row and its settlement commit together,
//! so "its row exists" is exactly "it was applied").
//!
//! Two segments, `<db>.usage-journal-0` and `-1`, take turns: appends go to the current one,
//! and once it passes [`ROTATE_AT`] bytes the other one is emptied and becomes current, as
//! soon as every record in it has been applied. So neither grows past about `ROTATE_AT`
//! while the applier keeps up, and no append ever waits for the applier.
//!
//! Appending blocks the calling thread, on purpose: it is one `pwrite` into the page cache
//! (about 1 µs, bench/RESULTS.md), which costs less than handing the entry to another thread;
//! the gateway calls it under the journal's mutex from the request's own thread. An append
//! slower than [`SLOW_APPEND`] (the disk or the kernel's dirty-page throttling holding
//! writers back) is logged as a warning, at most once every [`SLOW_WARN_EVERY`].
//!
//! # Format
//!
//! A segment is a sequence of records, little-endian:
//!
//! ```text
//! offset  size   field
//! 0       4      n: the payload's length in bytes, u32 (at least 1)
//! 4       4      CRC-32 (IEEE) of the n payload bytes, u32
//! 8       1      format version: 1
//! 9       n - 1  JSON (UTF-8): {"seq": <batch number>, "entries": [<entry>, ...]}
//! ```
//!
//! An entry is `{"usage": {...}, "reservation": {...} | null}`, with exactly the fields of
//! [`format::EntryV1`] (money in micro-credits, instants in unix ms). Version 0 is what
//! builds before versioning wrote: no version byte, the payload is the same JSON (so its
//! first byte is `{`). A new format gets a new version; this build reads 0 and 1.
//!
//! # Reading at start
//!
//! - A **torn tail** is cut off: a header or payload that stops at the end of the file, a
//!   last record whose checksum fails, or zeros to the end. It is what a write cut short by
//!   a kill leaves, and its request was never answered (the answer waits for the write).
//! - Anything else that cannot be read **refuses the start** ([`JournalError::Unreadable`],
//!   naming the file and the offset; nothing is changed on disk): a record whose checksum
//!   holds but whose version is unknown or whose JSON does not decode (say, a journal left
//!   by another build), or a damaged record with bytes after it. Such a record was written
//!   whole, so its requests were answered: dropping it would lose charges. The operator
//!   reads the records with `lowrouter journal inspect` and either starts the build that
//!   wrote them or moves the files aside with `lowrouter journal set-aside` (`cli::journal`).

mod format;

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::usage::UsageEntry;
use format::{decode_payload, frame_at, split_version, write_payload, Frame, HEADER};
pub use format::{Encoded, EntryV1, Record, VERSION};

/// A segment's size after which appends move to the other segment (once it is applied).
pub const ROTATE_AT: u64 = 4 << 20;
/// An append slower than this is logged (a healthy one takes microseconds).
pub const SLOW_APPEND: Duration = Duration::from_millis(10);
/// At most one slow-append warning per this long (each counts the slow appends since).
pub const SLOW_WARN_EVERY: Duration = Duration::from_secs(10);

/// Why the journal cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("usage journal: {0}")]
    Io(#[from] io::Error),
    /// A record that is not a torn tail and cannot be read (see the module's doc).
    #[error(
        "usage journal {}: the record at byte offset {offset} {reason}. It may hold answered \
         requests, so lowrouter does not start rather than drop them. Run `lowrouter journal \
         inspect` (with this configuration) to see the records; then start the lowrouter \
         version that wrote them, or run `lowrouter journal set-aside` to move the journal \
         files aside (they are kept) and start without their records",
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

struct Segment {
    file: File,
    len: u64,
    /// The highest batch number in this segment (0: none).
    last_seq: i64,
}

/// The open journal. Every method does file I/O on the calling thread.
pub struct Journal {
    segments: [Segment; 2],
    current: usize,
    buf: Vec<u8>,
    slow: SlowAppends,
}

impl Journal {
    /// Segment `i`'s path, for the database file `db`.
    pub fn segment_path(db: &Path, i: usize) -> PathBuf {
        let mut p = db.as_os_str().to_owned();
        p.push(format!(".usage-journal-{i}"));
        PathBuf::from(p)
    }

    /// Opens (creating) both segments of the journal of `db`, and returns every record in
    /// them, in batch-number order. A torn tail is cut off the file; a record that cannot
    /// be read otherwise is an error, and then no file is changed.
    pub fn open(db: &Path) -> Result<(Journal, Vec<Record>), JournalError> {
        let read = |i| -> Result<_, JournalError> {
            let path = Self::segment_path(db, i);
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            let (found, intact) = scan(&path, &bytes)?;
            Ok((path, file, bytes.len(), found, intact))
        };
        // Both segments are read before either is cut: a refusal changes nothing.
        let [first, second] = [read(0)?, read(1)?];
        let mut records = Vec::new();
        let mut finish =
            |(path, file, len, found, intact): (PathBuf, File, usize, Vec<Record>, usize)| {
                if intact < len {
                    tracing::warn!(
                        path = %path.display(),
                        dropped = len - intact,
                        "usage journal: dropped a torn record at the end"
                    );
                    file.set_len(intact as u64)?;
                }
                let last_seq = found.iter().map(|r| r.seq).max().unwrap_or(0);
                records.extend(found);
                io::Result::Ok(Segment {
                    file,
                    len: intact as u64,
                    last_seq,
                })
            };
        let segments = [finish(first)?, finish(second)?];
        records.sort_by_key(|r| r.seq);
        let current = usize::from(segments[1].last_seq > segments[0].last_seq);
        Ok((
            Journal {
                segments,
                current,
                buf: Vec::new(),
                slow: SlowAppends::default(),
            },
            records,
        ))
    }

    /// The records of the journal of `db` as [`Journal::open`] would return them (a torn
    /// tail left out), without creating or changing any file.
    pub fn read(db: &Path) -> Result<Vec<Record>, JournalError> {
        let mut records = Vec::new();
        for i in 0..2 {
            let path = Self::segment_path(db, i);
            match std::fs::read(&path) {
                Ok(bytes) => records.extend(scan(&path, &bytes)?.0),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        records.sort_by_key(|r| r.seq);
        Ok(records)
    }

    /// Appends one record in one write, blocking the calling thread. On failure nothing of
    /// it stays in the file. `applied`: every batch numbered up to it is in SQLite (for the
    /// rotation).
    pub fn append_blocking(
        &mut self,
        seq: i64,
        entries: &[UsageEntry],
        applied: i64,
    ) -> io::Result<()> {
        self.append_encoded_blocking(seq, &Encoded::new(entries)?, applied)
    }

    /// [`Journal::append_blocking`] for entries serialized beforehand.
    pub fn append_encoded_blocking(
        &mut self,
        seq: i64,
        entries: &Encoded,
        applied: i64,
    ) -> io::Result<()> {
        let started = Instant::now();
        let written = self.append_now(seq, entries, applied);
        self.slow.note(started.elapsed());
        written
    }

    fn append_now(&mut self, seq: i64, entries: &Encoded, applied: i64) -> io::Result<()> {
        let other = 1 - self.current;
        if self.segments[self.current].len >= ROTATE_AT && applied >= self.segments[other].last_seq
        {
            let o = &mut self.segments[other];
            o.file.set_len(0)?;
            o.len = 0;
            o.last_seq = 0;
            self.current = other;
        }
        self.buf.clear();
        self.buf.extend_from_slice(&[0; HEADER]);
        write_payload(&mut self.buf, seq, entries);
        let payload_len = u32::try_from(self.buf.len() - HEADER)
            .map_err(|_| io::Error::other("usage journal record over 4 GiB"))?;
        let crc = crc32fast::hash(&self.buf[HEADER..]);
        self.buf[..4].copy_from_slice(&payload_len.to_le_bytes());
        self.buf[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        let seg = &mut self.segments[self.current];
        if let Err(e) = seg.file.write_all_at(&self.buf, seg.len) {
            // A partial record would hide every record after it: cut it off.
            let _ = seg.file.set_len(seg.len);
            return Err(e);
        }
        seg.len += self.buf.len() as u64;
        seg.last_seq = seg.last_seq.max(seq);
        Ok(())
    }

    /// Empties both segments: everything in them has been applied.
    pub fn clear(&mut self) -> io::Result<()> {
        for s in &mut self.segments {
            s.file.set_len(0)?;
            s.len = 0;
            s.last_seq = 0;
        }
        Ok(())
    }
}

/// The records of one segment's `bytes` and how many bytes they span (the rest is a torn
/// tail), or the first record that is neither readable nor a torn tail.
fn scan(path: &Path, bytes: &[u8]) -> Result<(Vec<Record>, usize), JournalError> {
    let unreadable = |offset: usize, reason: String| JournalError::Unreadable {
        path: path.to_owned(),
        offset: offset as u64,
        reason,
    };
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        let (payload, next) = match frame_at(bytes, at) {
            Frame::End | Frame::Torn => return Ok((records, at)),
            Frame::Damaged { reason } => return Err(unreadable(at, reason)),
            Frame::Whole { payload, next } => (payload, next),
        };
        match decode_payload(payload) {
            Ok((_, record)) => records.push(record),
            Err(reason) => return Err(unreadable(at, reason)),
        }
        at = next;
    }
}

/// One record of a segment as `lowrouter journal inspect` shows it: read without decoding
/// into this build's types, so records of other versions show too.
#[derive(Debug)]
pub enum Inspected<'a> {
    /// A record whose checksum holds: its version byte (0: unversioned), its JSON, and why
    /// this build cannot read it, if it cannot.
    Record {
        offset: u64,
        version: u8,
        json: &'a [u8],
        error: Option<String>,
    },
    /// A torn tail, which a start cuts off.
    Torn { offset: u64, bytes: u64 },
    /// A damaged record with bytes after it: the segment cannot be read past it.
    Damaged {
        offset: u64,
        bytes: u64,
        reason: String,
    },
}

/// Every record of a segment's `bytes`, readable or not (see [`Inspected`]).
pub fn inspect(bytes: &[u8]) -> Vec<Inspected<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let offset = at as u64;
        let rest = (bytes.len() - at) as u64;
        match frame_at(bytes, at) {
            Frame::End => return out,
            Frame::Torn => {
                out.push(Inspected::Torn {
                    offset,
                    bytes: rest,
                });
                return out;
            }
            Frame::Damaged { reason } => {
                out.push(Inspected::Damaged {
                    offset,
                    bytes: rest,
                    reason,
                });
                return out;
            }
            Frame::Whole { payload, next } => {
                let (version, json) = split_version(payload).unwrap_or((payload[0], &payload[1..]));
                out.push(Inspected::Record {
                    offset,
                    version,
                    json,
                    error: decode_payload(payload).err(),
                });
                at = next;
            }
        }
    }
}

/// Slow appends since the last warning about them.
#[derive(Default)]
struct SlowAppends {
    count: u64,
    worst: Duration,
    last_warned: Option<Instant>,
}

impl SlowAppends {
    /// Counts an append that took `took` if it was slow, and warns unless it warned less
    /// than [`SLOW_WARN_EVERY`] ago. Whether it warned.
    fn note(&mut self, took: Duration) -> bool {
        if took < SLOW_APPEND {
            return false;
        }
        self.count += 1;
        self.worst = self.worst.max(took);
        let now = Instant::now();
        if self
            .last_warned
            .is_some_and(|t| now.duration_since(t) < SLOW_WARN_EVERY)
        {
            return false;
        }
        tracing::warn!(
            slow_appends = self.count,
            worst_ms = self.worst.as_millis() as u64,
            threshold_ms = SLOW_APPEND.as_millis() as u64,
            "usage journal: slow appends (each request waits for its own); is the disk saturated?"
        );
        *self = SlowAppends {
            last_warned: Some(now),
            ..SlowAppends::default()
        };
        true
    }
}

#[cfg(test)]
mod tests;
