//! The OpenAI-compatible gateway under `/api/v1`. Every request is authenticated against the
//! database (see `auth`), scoped and reserved (see `chat`), and recorded through the group
//! commit writer (see `usage_writer`). The management API (`management`, with management
//! keys) and the OpenAPI document (`openapi`) share the scope: every `/api/v1` route is
//! registered here, in one place.

pub mod auth;
pub mod chat;
pub mod echo;
pub mod error;
pub mod holds;
pub mod info;
pub mod leaks;
pub mod ledger;
pub mod management;
pub mod openapi;
pub mod rate_limit;
pub mod refusals;
pub mod upstream;
pub mod usage_writer;

use actix_web::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use actix_web::web;

/// The gateway's routes; `cors_origins` may call it from browsers (none: no CORS at all).
pub fn routes(cfg: &mut web::ServiceConfig, cors_origins: &[String]) {
    let cors = cors_origins
        .iter()
        .fold(actix_cors::Cors::default(), |c, o| c.allowed_origin(o))
        .allowed_methods(["GET", "POST"])
        .allowed_headers([AUTHORIZATION, CONTENT_TYPE, ACCEPT])
        .expose_headers([
            "x-credit-balance",
            "x-lowrouter-generation-id",
            "retry-after",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ])
        .max_age(3600);
    cfg.service(
        web::scope("/api/v1")
            .wrap(actix_web::middleware::Condition::new(
                !cors_origins.is_empty(),
                cors,
            ))
            // A query string that does not decode is answered in the API's error shape.
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                error::ApiError::invalid_request(format!("The query string is not valid: {e}."))
                    .into()
            }))
            .route("/chat/completions", web::post().to(chat::completions))
            .route("/chat/completions", web::route().to(post_only))
            .route("/embeddings", web::post().to(chat::embeddings))
            .route("/embeddings", web::route().to(post_only))
            .route("/models", web::get().to(info::models))
            .route("/models/{id:.+}", web::get().to(info::model))
            .route("/key", web::get().to(info::key))
            .route("/credits", web::get().to(info::credits))
            .route("/generation/{id}", web::get().to(info::generation))
            .route("/generation", web::get().to(info::generation_by_query))
            .route("/leaked-tokens", web::post().to(leaks::report))
            .route("/leaked-tokens", web::route().to(post_only))
            .route("/keys", web::get().to(management::keys::list))
            .route("/keys", web::post().to(management::keys::create))
            .route("/keys/{id}", web::get().to(management::keys::get))
            .route("/keys/{id}", web::patch().to(management::keys::patch))
            .route("/keys/{id}", web::delete().to(management::keys::delete))
            .route("/keys/{id}/roll", web::post().to(management::roll::roll))
            .route("/usage", web::get().to(management::usage::list))
            .route(
                "/usage/export",
                web::get().to(management::usage_export::export),
            )
            .route("/audit", web::get().to(management::audit::list))
            .route(
                "/organization/usage/completions",
                web::get().to(management::org_usage::completions),
            )
            .route(
                "/organization/costs",
                web::get().to(management::org_usage::costs),
            )
            .route("/openapi.json", web::get().to(openapi::openapi_json))
            .default_service(web::to(not_found)),
    );
}

/// Any other method on a POST endpoint: 405 with `Allow`, in the API's error shape.
async fn post_only() -> actix_web::HttpResponse {
    let e = error::ApiError::method_not_allowed("POST");
    let body = e.body();
    e.response()
        .insert_header((actix_web::http::header::ALLOW, "POST"))
        .json(body)
}

async fn not_found() -> actix_web::HttpResponse {
    error::ApiError::not_found("This endpoint").into_response()
}
