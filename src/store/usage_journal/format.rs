//! The usage journal's record format on disk (the byte layout is in the parent module's
//! doc): framing, format versions, and the on-disk structs of version 1.
//!
//! The on-disk structs ([`EntryV1`] and its parts) are written out field by field, apart
//! from the in-memory [`UsageEntry`]: changing `NewUsage` or `Reservation` changes nothing
//! on disk, and the conversions below destructure every field, so such a change does not
//! compile until someone decides what the journal does about it (map it onto version 1, or
//! add a version 2 and keep reading 1). Version 0 is the unversioned format of earlier
//! builds, whose JSON is exactly version 1's. Version 2 ([`EntryV2`]) adds, beside each
//! entry's usage, the secret that served it (`key_secrets` id and last four; issue 15);
//! entries of versions 0 and 1 read back without one.

use std::borrow::Cow;
use std::io;

use serde::{Deserialize, Serialize};

use crate::domain::{Credits, ErrorCode, KeyId, WorkspaceId};
use crate::store::ledger::{HoldSource, Reservation};
use crate::store::usage::{NewUsage, UsageEntry, UsageStatus};

/// `[u32 length][u32 CRC-32]` before each payload.
pub(super) const HEADER: usize = 8;
/// The version this build writes.
pub const VERSION: u8 = 2;
/// The previous version, still read.
const VERSION_1: u8 = 1;
/// Version 0 has no version byte: its payload starts with the JSON object.
const LEGACY_FIRST_BYTE: u8 = b'{';

/// One journal record: the entries of one batch of requests, and the batch's number.
#[derive(Debug)]
pub struct Record {
    pub seq: i64,
    pub entries: Vec<UsageEntry>,
}

/// Entries serialized in the current version for `Journal::append_encoded_blocking`, ahead
/// of taking the journal (so the lock around it covers only the write).
pub struct Encoded(pub(super) Vec<u8>);

impl Encoded {
    pub fn new(entries: &[UsageEntry]) -> io::Result<Self> {
        let mut json = Vec::with_capacity(512 * entries.len());
        serde::Serializer::collect_seq(
            &mut serde_json::Serializer::new(&mut json),
            entries.iter().map(EntryV2::from),
        )?;
        Ok(Encoded(json))
    }
}

/// Writes the payload of record `seq` into `buf`: the version byte, then
/// `{"seq":n,"entries":[...]}` assembled around the encoded entries.
pub(super) fn write_payload(buf: &mut Vec<u8>, seq: i64, entries: &Encoded) {
    buf.push(VERSION);
    buf.extend_from_slice(format!("{{\"seq\":{seq},\"entries\":").as_bytes());
    buf.extend_from_slice(&entries.0);
    buf.push(b'}');
}

/// What the bytes at one offset of a segment hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// Nothing: the end of the segment.
    End,
    /// A record whose checksum holds, and the offset of the next one.
    Whole { payload: &'a [u8], next: usize },
    /// What a write cut short leaves at the end: a header or payload that stops at the end
    /// of the file, a last record whose checksum fails, or zeros to the end (a file grown by
    /// power loss before its data was written). Its request was never answered.
    Torn,
    /// A record whose checksum fails (or whose length is 0) with bytes after it: not what an
    /// interrupted write leaves, and the records after it cannot be trusted to be framed.
    Damaged { reason: String },
}

/// The frame at `at` in `bytes`.
pub(super) fn frame_at(bytes: &[u8], at: usize) -> Frame<'_> {
    let rest = &bytes[at.min(bytes.len())..];
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.iter().all(|b| *b == 0) {
        return Frame::Torn;
    }
    let Some(header) = rest.get(..HEADER) else {
        return Frame::Torn;
    };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let Some(payload) = rest.get(HEADER..HEADER + len) else {
        return Frame::Torn;
    };
    let after = rest.len() - HEADER - len;
    if len > 0 && crc32fast::hash(payload) == crc {
        Frame::Whole {
            payload,
            next: at + HEADER + len,
        }
    } else if after == 0 && len > 0 {
        Frame::Torn
    } else {
        let what = if len == 0 {
            "has length 0"
        } else {
            "fails its checksum"
        };
        Frame::Damaged {
            reason: format!(
                "{what}, and {after} bytes follow it (a cut write leaves nothing after)"
            ),
        }
    }
}

/// A payload's format version and the JSON after it (version 0 has no version byte), or
/// its first byte if that names no version this build reads.
pub(super) fn split_version(payload: &[u8]) -> Result<(u8, &[u8]), u8> {
    match payload.first() {
        Some(&LEGACY_FIRST_BYTE) => Ok((0, payload)),
        Some(&v @ (VERSION | VERSION_1)) => Ok((v, &payload[1..])),
        Some(&other) => Err(other),
        None => Err(0),
    }
}

/// Decodes a payload whose checksum holds; returns its format version too, or why it does
/// not decode.
pub(super) fn decode_payload(payload: &[u8]) -> Result<(u8, Record), String> {
    let (version, json) = split_version(payload).map_err(|v| {
        format!(
            "has a valid checksum but format version {v}, which this build of lowrouter does \
             not read (it reads versions {VERSION_1} and {VERSION}, and unversioned records starting with `{{`)"
        )
    })?;
    let bad =
        |e| format!("has a valid checksum but does not decode as format version {version}: {e}");
    let (seq, entries) = if version == VERSION {
        let r = serde_json::from_slice::<RecordV2>(json).map_err(bad)?;
        (r.seq, r.entries.into_iter().map(UsageEntry::from).collect())
    } else {
        let r = serde_json::from_slice::<RecordV1>(json).map_err(bad)?;
        (r.seq, r.entries.into_iter().map(UsageEntry::from).collect())
    };
    Ok((version, Record { seq, entries }))
}

/// A record of version 1 (and 0) on disk: `{"seq": n, "entries": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordV1 {
    seq: i64,
    entries: Vec<EntryV1<'static>>,
}

/// A record of version 2: `{"seq": n, "entries": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordV2 {
    seq: i64,
    entries: Vec<EntryV2<'static>>,
}

/// A usage entry on disk, version 2: version 1's usage and hold, and the secret that served
/// the request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryV2<'a> {
    usage: UsageV1<'a>,
    /// Left out when unknown, so such an entry reads the same as version 1's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<SecretV2<'a>>,
    reservation: Option<ReservationV1<'a>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretV2<'a> {
    id: i64,
    last4: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client: Option<Cow<'a, str>>,
}

impl<'a> From<&'a UsageEntry> for EntryV2<'a> {
    fn from(e: &'a UsageEntry) -> Self {
        let EntryV1 { usage, reservation } = EntryV1::from(e);
        let secret = match (e.usage.secret_id, &e.usage.secret_last4) {
            (Some(id), Some(last4)) => Some(SecretV2 {
                id,
                last4: Cow::Borrowed(last4),
                client: borrowed(&e.usage.client),
            }),
            _ => None,
        };
        EntryV2 {
            usage,
            secret,
            reservation,
        }
    }
}

impl From<EntryV2<'_>> for UsageEntry {
    fn from(e: EntryV2<'_>) -> Self {
        let mut entry = UsageEntry::from(EntryV1 {
            usage: e.usage,
            reservation: e.reservation,
        });
        if let Some(s) = e.secret {
            entry.usage.secret_id = Some(s.id);
            entry.usage.secret_last4 = Some(s.last4.into_owned());
            entry.usage.client = s.client.map(Cow::into_owned);
        }
        entry
    }
}

/// A usage entry on disk, version 1: the usage row and the hold it settles.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryV1<'a> {
    usage: UsageV1<'a>,
    reservation: Option<ReservationV1<'a>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageV1<'a> {
    generation_id: Cow<'a, str>,
    account_id: i64,
    key_id: i64,
    key_name: Cow<'a, str>,
    requested_model: Cow<'a, str>,
    resolved_model: Option<Cow<'a, str>>,
    provider: Option<Cow<'a, str>>,
    region: Option<Cow<'a, str>>,
    prompt_tokens: i64,
    completion_tokens: i64,
    /// Micro-credits charged.
    cost: i64,
    status: StatusV1,
    http_status: u16,
    /// Its wire string, as in the `error_code` column; an unknown one does not decode.
    error_code: Option<ErrorCode>,
    streamed: bool,
    latency_ms: i64,
    started_at: i64,
    completed_at: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum StatusV1 {
    Ok,
    ClientError,
    UpstreamError,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReservationV1<'a> {
    id: Cow<'a, str>,
    account_id: i64,
    key_id: i64,
    /// Micro-credits held.
    amount: i64,
    day: i64,
    month: i64,
    in_db: bool,
}

fn borrowed(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

impl<'a> From<&'a UsageEntry> for EntryV1<'a> {
    fn from(e: &'a UsageEntry) -> Self {
        let NewUsage {
            generation_id,
            account_id,
            key_id,
            key_name,
            requested_model,
            resolved_model,
            provider,
            region,
            prompt_tokens,
            completion_tokens,
            cost,
            status,
            http_status,
            error_code,
            streamed,
            latency_ms,
            started_at,
            completed_at,
            // Version 2 carries them beside the usage (`EntryV2`).
            secret_id: _,
            secret_last4: _,
            client: _,
        } = &e.usage;
        EntryV1 {
            usage: UsageV1 {
                generation_id: Cow::Borrowed(generation_id),
                account_id: account_id.0,
                key_id: key_id.0,
                key_name: Cow::Borrowed(key_name),
                requested_model: Cow::Borrowed(requested_model),
                resolved_model: borrowed(resolved_model),
                provider: borrowed(provider),
                region: borrowed(region),
                prompt_tokens: *prompt_tokens,
                completion_tokens: *completion_tokens,
                cost: cost.micros(),
                status: match status {
                    UsageStatus::Ok => StatusV1::Ok,
                    UsageStatus::ClientError => StatusV1::ClientError,
                    UsageStatus::UpstreamError => StatusV1::UpstreamError,
                },
                http_status: *http_status,
                error_code: *error_code,
                streamed: *streamed,
                latency_ms: *latency_ms,
                started_at: *started_at,
                completed_at: *completed_at,
            },
            reservation: e.reservation.as_ref().map(|r| {
                let Reservation {
                    account_id,
                    key_id,
                    amount,
                    day,
                    month,
                    source,
                } = r;
                // Leases are PostgreSQL's; the journal is SQLite's: never one here.
                let (id, in_db) = match source {
                    HoldSource::Row(id) => (id.as_str(), true),
                    HoldSource::Memory | HoldSource::Lease(_) => ("", false),
                };
                ReservationV1 {
                    id: Cow::Borrowed(id),
                    account_id: account_id.0,
                    key_id: key_id.0,
                    amount: amount.micros(),
                    day: *day,
                    month: *month,
                    in_db,
                }
            }),
        }
    }
}

impl From<EntryV1<'_>> for UsageEntry {
    fn from(e: EntryV1<'_>) -> Self {
        let u = e.usage;
        UsageEntry {
            usage: NewUsage {
                generation_id: u.generation_id.into_owned(),
                account_id: WorkspaceId(u.account_id),
                key_id: KeyId(u.key_id),
                key_name: u.key_name.into_owned(),
                requested_model: u.requested_model.into_owned(),
                resolved_model: u.resolved_model.map(Cow::into_owned),
                provider: u.provider.map(Cow::into_owned),
                region: u.region.map(Cow::into_owned),
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cost: Credits::from_micros(u.cost),
                status: match u.status {
                    StatusV1::Ok => UsageStatus::Ok,
                    StatusV1::ClientError => UsageStatus::ClientError,
                    StatusV1::UpstreamError => UsageStatus::UpstreamError,
                },
                http_status: u.http_status,
                error_code: u.error_code,
                streamed: u.streamed,
                latency_ms: u.latency_ms,
                started_at: u.started_at,
                completed_at: u.completed_at,
                secret_id: None,
                secret_last4: None,
                client: None,
            },
            reservation: e.reservation.map(|r| Reservation {
                account_id: WorkspaceId(r.account_id),
                key_id: KeyId(r.key_id),
                amount: Credits::from_micros(r.amount),
                day: r.day,
                month: r.month,
                source: if r.in_db {
                    HoldSource::Row(r.id.into_owned())
                } else {
                    HoldSource::Memory
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests;
