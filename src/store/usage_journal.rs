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
//! Format: records of `[u32 length][u32 CRC-32 of the payload][payload]` (little-endian),
//! the payload being `{"seq": n, "entries": [...]}` as JSON. A record cut short by a kill,
//! or whose checksum fails, ends the file: it and anything after it is dropped (its requests
//! were never answered, since the answer waits for the whole write).
//!
//! Two segments, `<db>.usage-journal-0` and `-1`, take turns: appends go to the current one,
//! and once it passes [`ROTATE_AT`] bytes the other one is emptied and becomes current, as
//! soon as every record in it has been applied. So neither grows past about `ROTATE_AT`
//! while the applier keeps up, and no append ever waits for the applier.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::usage::UsageEntry;

/// A segment's size after which appends move to the other segment (once it is applied).
pub const ROTATE_AT: u64 = 4 << 20;

const HEADER: usize = 8;

/// One journal record: the entries of one batch of requests, and the batch's number.
#[derive(Debug, serde::Deserialize)]
pub struct Record {
    pub seq: i64,
    pub entries: Vec<UsageEntry>,
}

/// Entries serialized for [`Journal::append_encoded`], ahead of taking the journal (so the
/// lock around it covers only the write).
pub struct Encoded(Vec<u8>);

impl Encoded {
    pub fn new(entries: &[UsageEntry]) -> io::Result<Self> {
        Ok(Encoded(serde_json::to_vec(entries)?))
    }
}

struct Segment {
    file: File,
    len: u64,
    /// The highest batch number in this segment (0: none).
    last_seq: i64,
}

pub struct Journal {
    segments: [Segment; 2],
    current: usize,
    buf: Vec<u8>,
}

impl Journal {
    /// Segment `i`'s path, for the database file `db`.
    pub fn segment_path(db: &Path, i: usize) -> PathBuf {
        let mut p = db.as_os_str().to_owned();
        p.push(format!(".usage-journal-{i}"));
        PathBuf::from(p)
    }

    /// Opens (creating) both segments of the journal of `db`, and returns every intact record
    /// in them, in batch-number order. A torn tail is cut off the file.
    pub fn open(db: &Path) -> io::Result<(Journal, Vec<Record>)> {
        let mut records = Vec::new();
        let mut open = |i| -> io::Result<Segment> {
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
            let (found, intact) = decode(&bytes);
            if intact < bytes.len() {
                tracing::warn!(
                    path = %path.display(),
                    dropped = bytes.len() - intact,
                    "usage journal: dropped a torn record at the end"
                );
                file.set_len(intact as u64)?;
            }
            let last_seq = found.iter().map(|r| r.seq).max().unwrap_or(0);
            records.extend(found);
            Ok(Segment {
                file,
                len: intact as u64,
                last_seq,
            })
        };
        let segments = [open(0)?, open(1)?];
        records.sort_by_key(|r| r.seq);
        let current = usize::from(segments[1].last_seq > segments[0].last_seq);
        Ok((
            Journal {
                segments,
                current,
                buf: Vec::new(),
            },
            records,
        ))
    }

    /// Appends one record in one write. On failure nothing of it stays in the file.
    /// `applied`: every batch numbered up to it is in SQLite (for the rotation).
    pub fn append(&mut self, seq: i64, entries: &[UsageEntry], applied: i64) -> io::Result<()> {
        self.append_encoded(seq, &Encoded::new(entries)?, applied)
    }

    /// [`Journal::append`] for entries serialized beforehand.
    pub fn append_encoded(&mut self, seq: i64, entries: &Encoded, applied: i64) -> io::Result<()> {
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
        // The payload is `{"seq": n, "entries": [...]}`, assembled around the encoded entries.
        write!(self.buf, "{{\"seq\":{seq},\"entries\":")?;
        self.buf.extend_from_slice(&entries.0);
        self.buf.push(b'}');
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

/// The intact records at the start of `bytes`, and how many bytes they span.
fn decode(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match serde_json::from_slice::<Record>(payload) {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
        at += HEADER + len;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::usage::sample_entry;

    fn entry(id: &str) -> UsageEntry {
        sample_entry(id, 1, 2)
    }

    fn ids(records: &[Record]) -> Vec<(i64, String)> {
        records
            .iter()
            .flat_map(|r| {
                r.entries
                    .iter()
                    .map(move |e| (r.seq, e.usage.generation_id.clone()))
            })
            .collect()
    }

    #[test]
    fn records_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let (mut j, found) = Journal::open(&db).unwrap();
        assert!(found.is_empty());
        j.append(1, &[entry("a"), entry("b")], 0).unwrap();
        j.append(2, &[entry("c")], 0).unwrap();
        drop(j);
        // A kill in the middle of a write: half a record at the end.
        let path = Journal::segment_path(&db, 0);
        let full = std::fs::metadata(&path).unwrap().len();
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.clone();
        bytes.extend_from_slice(&whole[..whole.len() / 3]);
        std::fs::write(&path, &bytes).unwrap();

        let (mut j, found) = Journal::open(&db).unwrap();
        assert_eq!(
            ids(&found),
            [(1, "a".into()), (1, "b".into()), (2, "c".into())]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full, "tail cut");
        // Appends continue after the intact records.
        j.append(3, &[entry("d")], 0).unwrap();
        drop(j);
        let (_, found) = Journal::open(&db).unwrap();
        assert_eq!(found.last().map(|r| r.seq), Some(3));
        assert_eq!(found.len(), 3);

        // A flipped byte fails the checksum: that record and the rest are dropped.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 5] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, found) = Journal::open(&db).unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn segments_rotate_only_once_the_other_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let (mut j, _) = Journal::open(&db).unwrap();
        let big: Vec<UsageEntry> = (0..2000).map(|i| entry(&format!("g{i}"))).collect();
        let mut seq = 0;
        while j.segments[0].len < ROTATE_AT {
            seq += 1;
            j.append(seq, &big, 0).unwrap();
        }
        // Segment 1 is empty (last_seq 0): the next append moves there.
        seq += 1;
        j.append(seq, &big, 0).unwrap();
        assert_eq!(j.current, 1);
        while j.segments[1].len < ROTATE_AT {
            seq += 1;
            j.append(seq, &big, 0).unwrap();
        }
        // Segment 0 holds an unapplied record: it must not be emptied.
        let first_segment_last = j.segments[0].last_seq;
        seq += 1;
        j.append(seq, &big, first_segment_last - 1).unwrap();
        assert_eq!(j.current, 1);
        seq += 1;
        j.append(seq, &big, first_segment_last).unwrap();
        assert_eq!(j.current, 0);
        drop(j);
        let (_, found) = Journal::open(&db).unwrap();
        let seqs: Vec<i64> = found.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
        assert_eq!(seqs.last(), Some(&seq));
        assert!(
            seqs[0] > first_segment_last,
            "the applied segment was emptied"
        );
    }
}
