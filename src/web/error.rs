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
    /// The member's role does not allow this (`web::access`).
    #[error("forbidden")]
    Forbidden,
    /// The person must verify their email address first (`service::email_gate`).
    #[error("email not verified")]
    Unverified,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Too many password hashes at once (see `web::password::HashPool`): try again shortly.
    #[error("busy")]
    Busy,
    /// A per-account budget is spent (verification mail): the page says what and how long.
    #[error("too many requests")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    /// Details go to the log, never to the page; the cause is kept (`source()`).
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl WebError {
    /// A failure the visitor cannot fix, with its cause (an error, or a message).
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> WebError {
        WebError::Internal(cause.into())
    }
}

/// What an unverified person is told wherever the email gate stops them.
pub const UNVERIFIED: &str = "Verify your email address first: open the link we sent you, or \
    press Resend email at the top of any page for a new one. Until then you cannot create or \
    roll keys, make management keys, invite people or join a workspace.";

impl From<crate::service::email_gate::Unverified> for WebError {
    fn from(_: crate::service::email_gate::Unverified) -> Self {
        WebError::Unverified
    }
}

/// `Retry-After` on a busy answer: a few argon2 runs' time.
pub const BUSY_RETRY_AFTER_SECS: u32 = 2;

impl From<crate::password_hashing::HashError> for WebError {
    fn from(e: crate::password_hashing::HashError) -> Self {
        match e {
            crate::password_hashing::HashError::Busy => WebError::Busy,
            other => WebError::internal(other),
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => WebError::NotFound,
            other => WebError::internal(other),
        }
    }
}

/// A keys-service refusal where no form can show it field by field (a form re-renders with
/// [`crate::service::keys::KeyError::field_errors`] instead).
impl From<crate::service::keys::KeyError> for WebError {
    fn from(e: crate::service::keys::KeyError) -> Self {
        use crate::service::keys::KeyError;
        match e {
            KeyError::NotFound => WebError::NotFound,
            KeyError::Store(e) => e.into(),
            e => WebError::BadRequest(
                e.field_errors()
                    .and_then(|f| f.first().map(|(_, m)| m.to_owned()))
                    .unwrap_or_else(|| e.to_string()),
            ),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::internal(e)
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
            WebError::Csrf | WebError::Forbidden | WebError::Unverified => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            WebError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            WebError::Forbidden => (
                "Not allowed",
                "Your role in this workspace does not allow this. Ask an owner or admin.",
            ),
            WebError::Unverified => ("Verify your email address first", UNVERIFIED),
            WebError::BadRequest(m) => ("Bad request", m.as_str()),
            WebError::Busy => (
                "Busy",
                "The server is handling many sign-ins right now. Nothing was changed; wait a few seconds and try again.",
            ),
            WebError::TooManyRequests { message, .. } => ("Please wait", message.as_str()),
            WebError::Internal(detail) => {
                tracing::error!(error = %detail, "dashboard request failed");
                ("Something went wrong", "The server could not complete this request. Nothing was changed; try again.")
            }
        };
        let body = ErrorPage { title, message }
            .render()
            .unwrap_or_else(|_| message.to_owned());
        let mut response = HttpResponse::build(self.status_code());
        match self {
            WebError::Busy => {
                response.insert_header((header::RETRY_AFTER, BUSY_RETRY_AFTER_SECS.to_string()));
            }
            WebError::TooManyRequests { retry_after, .. } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            _ => {}
        }
        response.content_type("text/html; charset=utf-8").body(body)
    }
}

pub type WebResult<T> = Result<T, WebError>;
