//! The OpenAI-compatible gateway under `/api/v1`. Every request is authenticated against the
//! database (see `auth`), scoped and reserved (see `chat`), and recorded through the group
//! commit writer (see `usage_writer`).

pub mod auth;
pub mod chat;
pub mod echo;
pub mod error;
pub mod holds;
pub mod info;
pub mod refusals;
pub mod upstream;
pub mod usage_writer;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/chat/completions", web::post().to(chat::completions))
            .route("/models", web::get().to(info::models))
            .route("/key", web::get().to(info::key))
            .route("/credits", web::get().to(info::credits))
            .route("/generation/{id}", web::get().to(info::generation))
            .default_service(web::to(not_found)),
    );
}

async fn not_found() -> actix_web::HttpResponse {
    error::ApiError::not_found("This endpoint").into_response()
}
