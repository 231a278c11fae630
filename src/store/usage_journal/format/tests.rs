//! The journal record format: round trips, refusals and checksums.

use super::*;
use crate::store::usage::sample_entry;

fn payload(seq: i64, entries: &[UsageEntry]) -> Vec<u8> {
    let mut buf = Vec::new();
    write_payload(&mut buf, seq, &Encoded::new(entries).unwrap());
    buf
}

#[test]
fn entries_round_trip_through_version_2() {
    let mut refused = sample_entry("gen-1", 3, 4);
    refused.usage.status = UsageStatus::ClientError;
    refused.usage.error_code = Some(ErrorCode::ModelNotFound);
    refused.usage.requested_model = "bad \"model\"\n".into();
    refused.usage.region = Some("eu".into());
    refused.reservation = None;
    let entries = vec![sample_entry("gen-0", 1, 2), refused];
    let bytes = payload(7, &entries);
    assert_eq!(bytes[0], VERSION);
    let (version, record) = decode_payload(&bytes).unwrap();
    assert_eq!((version, record.seq), (VERSION, 7));
    assert_eq!(format!("{:?}", record.entries), format!("{entries:?}"));
}

/// Version 1's JSON, written out by hand: a record like this may sit in a journal while
/// the binary is upgraded, so this build must read it as it is. Never change this text;
/// a new format is a new version.
const V1_JSON: &str = r#"{"seq":42,"entries":[{"usage":{"generation_id":"gen-1","account_id":1,"key_id":2,"key_name":"k","requested_model":"m","resolved_model":"lowrouter/echo","provider":"lowrouter","region":null,"prompt_tokens":10,"completion_tokens":5,"cost":1000,"status":"UpstreamError","http_status":502,"error_code":"upstream_error","streamed":true,"latency_ms":3,"started_at":1700000000000,"completed_at":1700000000003},"reservation":{"id":"","account_id":1,"key_id":2,"amount":5000,"day":19675,"month":646,"in_db":false}}]}"#;

#[test]
fn versions_0_and_1_as_written_still_decode() {
    let mut v1 = vec![1];
    v1.extend_from_slice(V1_JSON.as_bytes());
    for (payload, version) in [(v1, 1), (V1_JSON.as_bytes().to_vec(), 0)] {
        let (v, record) = decode_payload(&payload).unwrap();
        assert_eq!((v, record.seq), (version, 42));
        let e = &record.entries[0];
        assert_eq!(e.usage.status, UsageStatus::UpstreamError);
        assert_eq!((e.usage.cost.micros(), e.usage.http_status), (1000, 502));
        assert!(e.usage.streamed);
        let r = e.reservation.as_ref().unwrap();
        assert_eq!((r.amount.micros(), r.day, r.month), (5000, 19675, 646));
    }
}

#[test]
fn unknown_versions_and_other_json_are_refused() {
    let mut v3 = vec![3];
    v3.extend_from_slice(V1_JSON.as_bytes());
    let e = decode_payload(&v3).unwrap_err();
    assert!(e.contains("format version 3"), "{e}");

    // Version 1 with a field it does not have (say, from a build that added one without
    // a new version): refused, not half-read.
    let extra = V1_JSON.replace("\"streamed\":true", "\"streamed\":true,\"tier\":1");
    let mut bytes = vec![1];
    bytes.extend_from_slice(extra.as_bytes());
    let e = decode_payload(&bytes).unwrap_err();
    assert!(
        e.contains("as format version 1: unknown field `tier`"),
        "{e}"
    );

    let e = decode_payload(br#"{"seq":1,"entries":[{"usage":{}}]}"#).unwrap_err();
    assert!(e.contains("as format version 0: missing field"), "{e}");
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn frames_tell_a_torn_tail_from_damage() {
    let one = framed(&payload(1, &[sample_entry("a", 1, 2)]));
    let mut two = one.clone();
    two.extend_from_slice(&one);
    assert!(matches!(frame_at(&two, 0), Frame::Whole { next, .. } if next == one.len()));
    assert_eq!(frame_at(&two, two.len()), Frame::End);
    // Cut anywhere inside the second record: torn.
    for cut in [1, HEADER - 1, HEADER, one.len() - 1] {
        assert_eq!(frame_at(&two[..one.len() + cut], one.len()), Frame::Torn);
    }
    // Zeros to the end: torn.
    let mut zeros = one.clone();
    zeros.extend_from_slice(&[0; 64]);
    assert_eq!(frame_at(&zeros, one.len()), Frame::Torn);
    // A flipped byte in the last record: torn. In the first, with a record after: damage.
    let mut flipped = two.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(frame_at(&flipped, one.len()), Frame::Torn);
    let mut flipped = two.clone();
    flipped[HEADER + 3] ^= 1;
    assert!(matches!(frame_at(&flipped, 0), Frame::Damaged { .. }));
}
