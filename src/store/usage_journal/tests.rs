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
    j.append_blocking(1, &[entry("a"), entry("b")], 0).unwrap();
    j.append_blocking(2, &[entry("c")], 0).unwrap();
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
    j.append_blocking(3, &[entry("d")], 0).unwrap();
    drop(j);
    let (_, found) = Journal::open(&db).unwrap();
    assert_eq!(found.last().map(|r| r.seq), Some(3));
    assert_eq!(found.len(), 3);

    // A flipped byte in the last record fails its checksum: a torn tail, cut.
    let before = std::fs::read(&path).unwrap();
    let mut bytes = before.clone();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let (_, found) = Journal::open(&db).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        full,
        "torn record cut"
    );

    // In the first record, with records after it: not a torn tail; refused, kept as is.
    let mut bytes = before;
    bytes[HEADER + 5] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = Journal::open(&db).err().expect("refused");
    assert!(
        matches!(&e, JournalError::Unreadable { offset: 0, reason, .. } if reason.contains("checksum")),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "unchanged");
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A record whose checksum holds but that this build cannot read stops the start, names
/// the file, the offset and the way out, and leaves both segments as they were (even
/// the other one's torn tail).
#[test]
fn a_whole_record_that_does_not_decode_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let (mut j, _) = Journal::open(&db).unwrap();
    j.append_blocking(1, &[entry("a")], 0).unwrap();
    drop(j);
    let (seg0, seg1) = (Journal::segment_path(&db, 0), Journal::segment_path(&db, 1));
    let good = std::fs::read(&seg0).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(&good[..5]);
    std::fs::write(&seg0, &torn).unwrap();
    let v3 = framed(b"\x03{\"seq\":2,\"entries\":[]}");
    let not_v1 = framed(b"\x01{\"seq\":2,\"rows\":[]}");
    for bad in [v3, not_v1] {
        let mut planted = good.clone();
        planted.extend_from_slice(&bad);
        std::fs::write(&seg1, &planted).unwrap();
        let e = Journal::open(&db).err().expect("refused");
        let JournalError::Unreadable { path, offset, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((path, *offset), (&seg1, good.len() as u64));
        let message = e.to_string();
        for part in [
            seg1.display().to_string(),
            format!("offset {}", good.len()),
            "valid checksum".into(),
            "lowrouter journal set-aside".into(),
        ] {
            assert!(message.contains(&part), "{part} in {message}");
        }
        assert_eq!(std::fs::read(&seg0).unwrap(), torn);
        assert_eq!(std::fs::read(&seg1).unwrap(), planted);
    }
    let inspected = inspect(&std::fs::read(&seg1).unwrap()).len();
    assert_eq!(inspected, 2);
}

/// A journal an unversioned build left (its JSON is version 1's) is read and applied.
#[test]
fn an_unversioned_journal_from_an_earlier_build_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    // Without a secret, an entry encodes exactly as version 1 did.
    let mut old = entry("old");
    (old.usage.secret_id, old.usage.secret_last4) = (None, None);
    let encoded = Encoded::new(&[old]).unwrap();
    let mut payload = b"{\"seq\":5,\"entries\":".to_vec();
    payload.extend_from_slice(&encoded.0);
    payload.push(b'}');
    std::fs::write(Journal::segment_path(&db, 0), framed(&payload)).unwrap();
    let (_, found) = Journal::open(&db).unwrap();
    assert_eq!(ids(&found), [(5, "old".into())]);
}

#[test]
fn inspect_shows_every_record_whatever_its_version() {
    let mut bytes = framed(b"\x01{\"seq\":1,\"entries\":[]}");
    bytes.extend(framed(b"\x07{\"seq\":2}"));
    bytes.extend(framed(b"{\"seq\":3,\"entries\":[]}"));
    bytes.extend_from_slice(&[9, 0, 0]);
    let found = inspect(&bytes);
    let summary: Vec<String> = found
        .iter()
        .map(|i| match i {
            Inspected::Record {
                version,
                json,
                error,
                ..
            } => format!(
                "{version} {} {}",
                String::from_utf8_lossy(json),
                error.is_some()
            ),
            Inspected::Torn { bytes, .. } => format!("torn {bytes}"),
            Inspected::Damaged { .. } => "damaged".into(),
        })
        .collect();
    assert_eq!(
        summary,
        [
            r#"1 {"seq":1,"entries":[]} false"#,
            r#"7 {"seq":2} true"#,
            r#"0 {"seq":3,"entries":[]} false"#,
            "torn 3",
        ]
    );
}

#[test]
fn slow_appends_warn_at_most_once_per_period() {
    let mut slow = SlowAppends::default();
    assert!(!slow.note(Duration::from_micros(5)));
    assert!(slow.note(SLOW_APPEND * 2));
    assert!(!slow.note(SLOW_APPEND * 3), "rate-limited");
    assert_eq!((slow.count, slow.worst), (1, SLOW_APPEND * 3));
    slow.last_warned = Instant::now().checked_sub(SLOW_WARN_EVERY);
    assert!(slow.note(SLOW_APPEND));
    assert_eq!(slow.count, 0);
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
        j.append_blocking(seq, &big, 0).unwrap();
    }
    // Segment 1 is empty (last_seq 0): the next append moves there.
    seq += 1;
    j.append_blocking(seq, &big, 0).unwrap();
    assert_eq!(j.current, 1);
    while j.segments[1].len < ROTATE_AT {
        seq += 1;
        j.append_blocking(seq, &big, 0).unwrap();
    }
    // Segment 0 holds an unapplied record: it must not be emptied.
    let first_segment_last = j.segments[0].last_seq;
    seq += 1;
    j.append_blocking(seq, &big, first_segment_last - 1)
        .unwrap();
    assert_eq!(j.current, 1);
    seq += 1;
    j.append_blocking(seq, &big, first_segment_last).unwrap();
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
