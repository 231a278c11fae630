//! A webhook receiver for the alert tests: a real HTTP server on 127.0.0.1 that records
//! every request. It answers 500 to the first `fail_first`, and to all while `failing` is
//! on, else 200, each after `delay`; `/redirect` answers 302 to `/landed`. It counts the
//! requests it is answering at once, and remembers the most.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub signature: String,
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// While true, every answer is a 500.
    pub failing: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

struct RecvState {
    r: Receiver,
    fail_first: usize,
    delay: Duration,
}

async fn receive(req: HttpRequest, body: web::Bytes, st: web::Data<RecvState>) -> HttpResponse {
    let r = &st.r;
    let now = r.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    r.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let n = {
        let mut hits = r.hits.lock().unwrap();
        hits.push(Hit {
            path: req.path().to_owned(),
            signature: req
                .headers()
                .get("lowrouter-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        hits.len()
    };
    tokio::time::sleep(st.delay).await;
    r.in_flight.fetch_sub(1, Ordering::SeqCst);
    if req.path() == "/redirect" {
        return HttpResponse::Found()
            .insert_header(("location", "/landed"))
            .finish();
    }
    if n <= st.fail_first || r.failing.load(Ordering::SeqCst) {
        HttpResponse::InternalServerError().body("not now")
    } else {
        HttpResponse::Ok().body("ok")
    }
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Self {
        Self::start_with(fail_first, Duration::ZERO).await
    }

    /// A receiver that answers each request after `delay`.
    pub async fn start_with(fail_first: usize, delay: Duration) -> Self {
        let (listener, port) = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            (l, port)
        };
        let r = Receiver {
            url: format!("http://127.0.0.1:{port}"),
            hits: Arc::new(Mutex::new(Vec::new())),
            failing: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            most_in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let shared = r.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(RecvState {
                    r: shared.clone(),
                    fail_first,
                    delay,
                }))
                .default_service(web::to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap();
        tokio::spawn(server.run());
        r
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The most requests it was answering at once.
    pub fn most_at_once(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds for the hits (panics after `limit`).
    pub async fn wait_for(&self, limit: Duration, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let start = Instant::now();
        loop {
            let hits = self.hits();
            if pred(&hits) {
                return hits;
            }
            assert!(
                start.elapsed() < limit,
                "receiver never saw it; got {} hits: {:?}",
                hits.len(),
                &hits[..hits.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
