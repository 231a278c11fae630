//! Email verification (`require_email_verification`): the link's page, its form, and
//! Resend.
//!
//! Opening the link (GET) verifies nothing: mail scanners and link previews fetch links
//! too. It shows a form whose POST does it, with the public forms' CSRF token (`web::form`),
//! since the link may be opened signed out or in another browser. Verification marks the
//! account verified and grants it `signup_grant`, held back since sign-up: the grant is what
//! throwaway accounts were made for.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::form::{public_form_token, with_form_cookie, CsrfForm, PublicForm};
use super::session::TypedSession;
use super::{see_other, Dashboard};
use crate::domain::{time_util, Credits, Email, UserId, VerifyToken};
use crate::state::AppState;
use crate::store::email_tokens::{Issue, MailBudget, TokenState, Verification};

/// The form on the confirmation page.
pub struct ConfirmForm {
    pub csrf: String,
    pub token: String,
}

#[derive(Template)]
#[template(path = "verify_email.html")]
struct VerifyPage {
    title: &'static str,
    message: String,
    form: Option<ConfirmForm>,
    /// Where to go next, when there is no form.
    next: (&'static str, &'static str),
}

fn page(status: StatusCode, page: VerifyPage) -> WebResult<HttpResponse> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // The page's URL holds the token: requests from the page (its stylesheet, the form)
        // carry the origin alone as Referer. Not `no-referrer`: browsers then send the form's
        // `Origin` as `null`, and the CSRF check refuses it.
        .insert_header((header::REFERRER_POLICY, "strict-origin"))
        .body(page.render()?))
}

/// The page for a link that cannot verify anything, and its status.
fn refused(state: TokenState) -> WebResult<HttpResponse> {
    let to_keys = ("/keys", "Go to your keys");
    let (status, title, message, next) = match state {
        TokenState::Unknown => (
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "This verification link is not one we sent, or it was cut short. Open the link \
             from the email again, or copy all of it. Signed in, you can ask for a new email.",
            ("/login", "Log in"),
        ),
        TokenState::AccountVerified => (
            StatusCode::OK,
            "Email already verified",
            "This email address is verified already: there is nothing more to do.",
            to_keys,
        ),
        TokenState::Used => (
            StatusCode::GONE,
            "This link was already used",
            "Each verification link works once. Log in: if your address still needs \
             verifying, ask for a new email there.",
            ("/login", "Log in"),
        ),
        TokenState::Expired => (
            StatusCode::GONE,
            "This link has expired",
            "Verification links work for 24 hours. Log in and press Resend to get a new one.",
            ("/login", "Log in"),
        ),
        TokenState::Valid => {
            return Err(WebError::internal("a valid token was refused"));
        }
    };
    page(
        status,
        VerifyPage {
            title,
            message: message.into(),
            form: None,
            next,
        },
    )
}

/// A link whose token is not even shaped like ours (missing, cut, control characters):
/// refused before any SQL.
fn malformed() -> WebResult<HttpResponse> {
    refused(TokenState::Unknown).map(|mut r| {
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    })
}

/// GET /verify-email?token=…: the confirmation page, or why the link cannot work.
pub async fn confirm_page(state: web::Data<AppState>, req: HttpRequest) -> WebResult<HttpResponse> {
    let token = form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let Ok(token) = VerifyToken::parse(&token) else {
        return malformed();
    };
    let now = time_util::now_ms();
    match state
        .store
        .verification_token_state(&token.hash(), now)
        .await?
    {
        TokenState::Valid => {}
        other => return refused(other),
    }
    let (csrf, cookie) = public_form_token(&req, &state.form_key, state.settings.cookie_secure());
    let response = page(
        StatusCode::OK,
        VerifyPage {
            title: "Verify your email address",
            message: "Press the button to confirm that this email address is yours.".into(),
            form: Some(ConfirmForm {
                csrf,
                token: token.expose().to_owned(),
            }),
            next: ("/keys", "Go to your keys"),
        },
    )?;
    with_form_cookie(response, cookie)
}

/// POST /verify-email: uses the token. Signed in as that account: back to the keys with a
/// flash; otherwise (another browser, signed out) a page saying it worked.
pub async fn verify(
    state: web::Data<AppState>,
    session: TypedSession,
    form: PublicForm,
) -> WebResult<HttpResponse> {
    let Ok(token) = VerifyToken::parse(form.get("token")) else {
        return malformed();
    };
    let now = time_util::now_ms();
    let grant = state.settings.signup_grant;
    let (account_id, granted) = match state.store.verify_email(&token.hash(), now, grant).await? {
        Verification::Verified {
            account_id,
            granted,
        } => (account_id, granted),
        Verification::Refused(why) => return refused(why),
    };
    tracing::info!(account_id = %account_id, "email verified");
    let message = if granted == Credits::ZERO {
        "Your email address is verified. You can create API keys now.".to_owned()
    } else {
        format!(
            "Your email address is verified, and {granted} credits were added to your \
             account. You can create API keys now."
        )
    };
    if session.user_id()?.map(|u| u.0) == Some(account_id.0) {
        session.set_flash(&message)?;
        return Ok(see_other("/keys"));
    }
    page(
        StatusCode::OK,
        VerifyPage {
            title: "Email verified",
            message,
            form: None,
            next: ("/keys", "Continue to your keys"),
        },
    )
}

/// The mail budget per account, from the settings.
fn budget(state: &AppState) -> MailBudget {
    MailBudget {
        interval: state.settings.verification_resend_interval,
        per_day: state.settings.verification_mails_per_day,
    }
}

/// Mails the link of `token` (stored already) to the account, in the background.
pub fn mail_link(state: &AppState, account_id: UserId, email: &Email, token: &VerifyToken) {
    match (&state.mailer, &state.settings.public_base_url) {
        (Some(mailer), Some(base)) => mailer.send_verification(
            account_id.0,
            email,
            base,
            token,
            state.settings.signup_grant,
        ),
        // `Settings::check` refuses to start with verification on and either missing.
        _ => tracing::error!(
            account_id = %account_id,
            "verification mail not sent: mail is not configured"
        ),
    }
}

/// POST /verify-email/resend: another link, within the account's mail budget. Sent from
/// an invitation's page (its `invitation` field), it goes back there; else to the keys.
pub async fn resend(
    state: web::Data<AppState>,
    user: Dashboard,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    if !state.settings.require_email_verification {
        return Err(WebError::NotFound);
    }
    // Only a token's shape is let through, so the redirect cannot point elsewhere.
    let back = match VerifyToken::parse(form.get("invitation")) {
        Ok(t) => format!("/invitations/{}", t.expose()),
        Err(_) => "/keys".to_owned(),
    };
    let token = VerifyToken::generate();
    let now = time_util::now_ms();
    let issued = state
        .store
        .issue_verification_token(
            user.user.personal_workspace(),
            &token.hash(),
            now,
            budget(&state),
        )
        .await?;
    let email = &user.email;
    match issued {
        Issue::Issued => {
            // The address was valid when the account was made.
            let email = Email::parse(email).map_err(WebError::internal)?;
            mail_link(&state, user.user, &email, &token);
            tracing::info!(
                account_id = user.user.0,
                "verification mail requested again"
            );
            user.session.set_flash(&format!(
                "We sent a new verification link to {email}. It works for 24 hours.",
                email = email.as_str()
            ))?;
        }
        Issue::AlreadyVerified => {
            user.session
                .set_flash("Your email address is verified already.")?;
        }
        Issue::TooSoon(wait) => {
            return Err(WebError::TooManyRequests {
                message: format!(
                    "A verification email went out to {email} moments ago. Mail can take a \
                     few minutes, and may land in a spam folder; you can ask for another in {}.",
                    duration(wait)
                ),
                retry_after: wait,
            })
        }
        Issue::DailyLimit(wait) => {
            return Err(WebError::TooManyRequests {
                message: format!(
                    "{} verification emails went out to {email} in the last 24 hours, the most \
                     we send in a day. You can ask for another in {}.",
                    budget(&state).per_day,
                    duration(wait)
                ),
                retry_after: wait,
            })
        }
    }
    Ok(see_other(&back))
}

/// "45 seconds", "3 minutes", "5 hours" (rounded up).
pub(super) fn duration(d: Duration) -> String {
    let s = d.as_secs().max(1);
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=3599 => (s.div_ceil(60), "minute"),
        _ => (s.div_ceil(3600), "hour"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Duration::from_millis(10)), "1 second");
        assert_eq!(duration(Duration::from_secs(45)), "45 seconds");
        assert_eq!(duration(Duration::from_secs(61)), "2 minutes");
        assert_eq!(duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(duration(Duration::from_secs(5 * 3600 - 1)), "5 hours");
    }
}
