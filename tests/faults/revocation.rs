//! Revocation under load.

use super::*;

pub(crate) struct Sample {
    started: Instant,
    status: Option<u16>,
    complete: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_request_started_after_delete_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh_database(dir.path()).await;
    let server = Server::start(dir.path(), &db_url, "revocation", &[]).await;
    let b = Browser::new(&server);
    b.signed_up().await;
    let token = b.create_key("loaded", &[]).await;
    let id = b.key_id("loaded").await;
    let delete_page = format!("/keys/{id}/delete");
    let csrf = csrf_of(&b.get_html(&delete_page).await);

    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let deleted_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let after_delete = Arc::new(AtomicUsize::new(0));
    let ok_count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..8usize {
        let (samples, stop, deleted_at, after_delete, ok_count) = (
            samples.clone(),
            stop.clone(),
            deleted_at.clone(),
            after_delete.clone(),
            ok_count.clone(),
        );
        let (base, token) = (server.base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let api = api_client();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let started = Instant::now();
                let r = echo(&api, &base, &token, "load", (worker + n).is_multiple_of(3)).await;
                if deleted_at.lock().unwrap().is_some_and(|d| started > d) {
                    after_delete.fetch_add(1, Ordering::SeqCst);
                }
                let (status, complete) = match &r {
                    Ok(r) => (Some(r.status), r.complete),
                    Err(_) => (None, false),
                };
                if complete {
                    ok_count.fetch_add(1, Ordering::SeqCst);
                }
                samples.lock().unwrap().push(Sample {
                    started,
                    status,
                    complete,
                });
            }
        }));
    }
    // Let the load get going, then Delete in the dashboard.
    wait_until(Duration::from_secs(30), "successful requests", || {
        ok_count.load(Ordering::SeqCst) >= 40
    })
    .await;
    let r = b
        .client
        .post(server.url(&format!("/keys/{id}/delete")))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let answered = Instant::now();
    *deleted_at.lock().unwrap() = Some(answered);
    assert_eq!(r.status(), 303, "Delete answered");
    wait_until(Duration::from_secs(30), "requests after the delete", || {
        after_delete.load(Ordering::SeqCst) >= 80
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }

    let samples = samples.lock().unwrap();
    let before = samples.iter().filter(|s| s.started <= answered).count();
    let after: Vec<_> = samples.iter().filter(|s| s.started > answered).collect();
    let violations: Vec<_> = after
        .iter()
        .filter(|s| s.status == Some(200) || s.complete)
        .collect();
    assert!(
        violations.is_empty(),
        "{} of {} requests started after the Delete answer succeeded",
        violations.len(),
        after.len()
    );
    assert!(after.len() >= 80 && before >= 40);
    for s in &after {
        assert_eq!(s.status, Some(401), "after delete: a clean 401");
    }
    // Before the answer: successes, plus at most a few 401s from requests that raced it.
    for s in samples.iter().filter(|s| s.started <= answered) {
        assert!(
            matches!(s.status, Some(200) | Some(401)),
            "unexpected {:?}",
            s.status
        );
    }
    eprintln!(
        "revocation: {before} requests started before the Delete answer, {} after, 0 succeeded after",
        after.len()
    );
}
