//! A signed-in person's 404 keeps the layout (navigation, balance, account): the page says
//! what is missing and the way on is one click away. Signed out, the plain page stays.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpResponse};
use askama::Template;

use super::error::WebError;
use super::{Dashboard, Layout};

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    layout: Layout,
}

/// Middleware (inside the session middleware): a 404 answer is re-rendered in the layout
/// when the request carries a signed-in session.
pub async fn with_layout(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    // Only the generic "nothing here" (WebError::NotFound): pages that answer 404 with their
    // own words (a bad verification link) keep them.
    let generic = res
        .response()
        .error()
        .and_then(|e| e.as_error::<WebError>())
        .is_some_and(|e| matches!(e, WebError::NotFound));
    if res.status() != StatusCode::NOT_FOUND || !generic {
        return Ok(res.map_into_boxed_body());
    }
    let (http, res) = res.into_parts();
    let Ok(user) = Dashboard::extract(&http).await else {
        return Ok(ServiceResponse::new(http, res.map_into_boxed_body()));
    };
    let page = NotFoundPage {
        layout: user.layout(""),
    };
    let Ok(body) = page.render() else {
        return Ok(ServiceResponse::new(http, res.map_into_boxed_body()));
    };
    let mut out = HttpResponse::NotFound();
    for (name, value) in res.headers() {
        if name != actix_web::http::header::CONTENT_LENGTH
            && name != actix_web::http::header::CONTENT_TYPE
        {
            out.append_header((name.clone(), value.clone()));
        }
    }
    let out = out.content_type("text/html; charset=utf-8").body(body);
    Ok(ServiceResponse::new(http, out))
}
