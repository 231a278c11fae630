//! `GET /healthz` (the process is alive and serving) and `GET /readyz` (it can serve: the
//! database answers and its schema is current; usage journaled by a previous process was
//! applied before the listener opened). On the main listener, outside sessions: probes
//! carry no cookie, and nothing here reveals more than ready or not.

use std::time::Duration;

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// A probe's answer must come before the prober gives up (Kubernetes' default is 1 s).
const READY_TIMEOUT: Duration = Duration::from_millis(900);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

fn text(mut r: actix_web::HttpResponseBuilder, body: &'static str) -> HttpResponse {
    r.content_type("text/plain; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(body)
}

async fn healthz() -> HttpResponse {
    text(HttpResponse::Ok(), "ok\n")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let check = tokio::time::timeout(READY_TIMEOUT, state.store.migrations_applied()).await;
    match check {
        Ok(Ok(true)) => text(HttpResponse::Ok(), "ready\n"),
        Ok(Ok(false)) => {
            tracing::warn!("not ready: the database schema is older than this binary");
            text(
                HttpResponse::ServiceUnavailable(),
                "not ready: migrations pending\n",
            )
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: database query failed");
            text(
                HttpResponse::ServiceUnavailable(),
                "not ready: database unavailable\n",
            )
        }
        Err(_) => {
            tracing::warn!("not ready: database did not answer in time");
            text(
                HttpResponse::ServiceUnavailable(),
                "not ready: database unavailable\n",
            )
        }
    }
}
