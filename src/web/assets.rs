//! Static files, compiled into the binary so it runs from any directory.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");

pub async fn serve(path: web::Path<String>) -> HttpResponse {
    let (body, ctype) = match path.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(ctype)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}
