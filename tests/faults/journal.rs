//! The usage journal (SQLite): a whole record this build cannot read stops the start,
//! and the command line's way out lets it start.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_journal_record_stops_the_start_until_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = sqlite_url(dir.path());
    let segment = dir.path().join("faults.db.usage-journal-0");

    // A server answers a request (applied: the credits read waits for it), then dies.
    let mut server = Server::start(dir.path(), &db_url, "journal-1", &[]).await;
    let b = Browser::new(&server);
    b.signed_up().await;
    let token = b.create_key("journaled", &[]).await;
    let api = api_client();
    let r = echo(&api, &server.base, &token, "before", false)
        .await
        .unwrap();
    assert!(r.complete);
    let generation = r.generation_id.unwrap();
    let credits = api
        .get(server.url("/api/v1/credits"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(credits.status(), 200);
    server.kill9();

    // After its records, a whole record (valid checksum) in a format version this build
    // does not read, as a newer build would leave it.
    let mut bytes = std::fs::read(&segment).unwrap();
    assert!(!bytes.is_empty(), "the answered request is journaled");
    let offset = bytes.len();
    let payload = [&[3u8][..], br#"{"seq":999,"entries":[]}"#].concat();
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    std::fs::write(&segment, &bytes).unwrap();

    // The server refuses to start, says where and what to do, and changes nothing.
    let (status, _, err) = run_to_exit(dir.path(), &db_url, &["serve"]).await;
    assert!(!status.success(), "refused to start:\n{err}");
    for part in [
        segment.display().to_string(),
        format!("byte offset {offset}"),
        "valid checksum but format version 3".into(),
        "lowrouter journal inspect".into(),
        "lowrouter journal set-aside".into(),
    ] {
        assert!(err.contains(&part), "{part:?} in:\n{err}");
    }
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "journal untouched");

    // `journal inspect` shows every record, the unreadable one with its offset and why.
    let (status, out, err) = run_to_exit(dir.path(), &db_url, &["journal", "inspect"]).await;
    assert!(status.success(), "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["offset"], offset as u64);
    assert_eq!(
        (&last["status"], &last["version"]),
        (&"unreadable".into(), &3.into())
    );
    assert_eq!(last["record"]["seq"], 999);
    let first = &lines[0];
    assert_eq!(
        (&first["status"], &first["version"]),
        (&"ok".into(), &2.into())
    );
    assert_eq!(
        first["record"]["entries"][0]["usage"]["generation_id"],
        generation.as_str()
    );

    // `journal set-aside` moves the files aside (kept, as they were); the server starts.
    let (status, out, err) = run_to_exit(dir.path(), &db_url, &["journal", "set-aside"]).await;
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("moved"), "{out}");
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("usage-journal-0.set-aside-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), bytes, "kept as it was");

    let server = Server::start(dir.path(), &db_url, "journal-2", &[]).await;
    let r = api
        .get(server.url(&format!("/api/v1/generation/{generation}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "what was applied before stays");
    assert!(
        echo(&api, &server.base, &token, "after", true)
            .await
            .unwrap()
            .complete
    );
    // Never under a running server.
    let (status, _, err) = run_to_exit(dir.path(), &db_url, &["journal", "set-aside"]).await;
    assert!(
        !status.success() && err.contains("another lowrouter process"),
        "{err}"
    );
}
