//! The dashboard's error type: every failure maps to one response.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Not signed in: go to the login page.
    #[error("login required")]
    LoginRequired,
    /// Missing, or another account's: the same answer for both.
    #[error("not found")]
    NotFound,
    #[error("the form expired or came from another site")]
    Csrf,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Details go to the log, never to the page.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => WebError::NotFound,
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(format!("template: {e}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::LoginRequired => StatusCode::SEE_OTHER,
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, message) = match self {
            WebError::LoginRequired => {
                return HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).finish();
            }
            WebError::NotFound => ("Not found", "There is nothing here, or it belongs to another account."),
            WebError::Csrf => (
                "Form expired",
                "This form expired or was sent from another site. Go back, reload the page and try again.",
            ),
            WebError::BadRequest(m) => ("Bad request", m.as_str()),
            WebError::Internal(detail) => {
                tracing::error!(error = %detail, "dashboard request failed");
                ("Something went wrong", "The server could not complete this request. Nothing was changed; try again.")
            }
        };
        let body = ErrorPage { title, message }
            .render()
            .unwrap_or_else(|_| message.to_owned());
        HttpResponse::build(self.status_code())
            .content_type("text/html; charset=utf-8")
            .body(body)
    }
}

pub type WebResult<T> = Result<T, WebError>;
