//! The page behind an invitation's link, and Accept. The link is for one email address:
//! accepting needs a session of that address and, with `require_email_verification` on,
//! the address verified (`service::email_gate`): signing up with someone else's address
//! proves nothing, opening the mail sent to it does. The page says what stands in the way,
//! and offers Resend for the verification mail (which comes back here).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::form::CsrfForm;
use super::{see_other, Dashboard};
use crate::domain::{time_util, VerifyToken};
use crate::service::invitations;
use crate::state::AppState;
use crate::store::members::Refusal;

/// What keeps the signed-in person from accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    /// Signed in with another address than the invited one.
    OtherEmail,
    /// The invited address, not verified yet.
    Unverified,
}

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    csrf: String,
    token: String,
    workspace: String,
    inviter: String,
    email: String,
    role: &'static str,
    signed_in_as: Option<String>,
    /// Signed in with another address than the invited one.
    other_email: bool,
    /// Signed in with the invited address, which must be verified first.
    unverified: bool,
    /// What the last action said (Resend's "We sent a new verification link…").
    flash: Option<String>,
}

const NOT_OPEN: &str = "This invitation link is not valid: it was used, revoked or has expired. \
    Ask for a new one.";

/// The invitation page for `token` as `user` sees it, answered with `status`. An
/// invitation that is not open is 400 saying so.
async fn page(
    state: &AppState,
    token: &VerifyToken,
    user: Option<&Dashboard>,
    status: StatusCode,
) -> WebResult<HttpResponse> {
    let found = state.store.invitation_by_token(&token.hash()).await?;
    let Some(link) = found.filter(|l| l.invitation.is_open(time_util::now_ms())) else {
        return Err(WebError::BadRequest(NOT_OPEN.into()));
    };
    let inv = link.invitation;
    let problem = user.and_then(|u| {
        if !u.email.eq_ignore_ascii_case(&inv.email) {
            Some(Problem::OtherEmail)
        } else if u.cleared().is_err() {
            Some(Problem::Unverified)
        } else {
            None
        }
    });
    let page = InvitationPage {
        csrf: user.map(|u| u.csrf.clone()).unwrap_or_default(),
        token: token.expose().to_owned(),
        workspace: link.workspace,
        inviter: link.inviter,
        email: inv.email,
        role: inv.role.label(),
        signed_in_as: user.map(|u| u.email.clone()),
        other_email: problem == Some(Problem::OtherEmail),
        unverified: problem == Some(Problem::Unverified),
        flash: user.and_then(|u| u.session.take_flash()),
    };
    // The default `Referrer-Policy: same-origin` keeps the link from other sites; a stricter
    // `no-referrer` would make the Accept POST's `Origin` null, which the CSRF check refuses.
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(page.render()?))
}

/// The page behind an invitation link: what it is for, and Accept (signed in with the
/// invited email, verified when that is required) or what to do first. Malformed links are
/// 404 before any SQL.
pub async fn show(
    state: web::Data<AppState>,
    path: web::Path<String>,
    user: Option<Dashboard>,
) -> WebResult<HttpResponse> {
    let token = VerifyToken::parse(&path).map_err(|_| WebError::NotFound)?;
    page(&state, &token, user.as_ref(), StatusCode::OK).await
}

/// Accept: joins the workspace. An unverified person gets the page again (403), saying to
/// verify first.
pub async fn accept(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
    _form: CsrfForm,
) -> WebResult<HttpResponse> {
    let token = VerifyToken::parse(&path).map_err(|_| WebError::NotFound)?;
    let Ok(cleared) = user.cleared() else {
        return page(&state, &token, Some(&user), StatusCode::FORBIDDEN).await;
    };
    let accepted = invitations::accept(
        &state.store,
        &token,
        user.user,
        &user.email,
        &user.actor,
        cleared,
    );
    match accepted.await? {
        Ok(ws) => {
            user.session.set_workspace(ws)?;
            user.session
                .set_flash("Welcome: you joined the workspace.")?;
            Ok(see_other("/keys"))
        }
        Err(Refusal::NotOpen) => Err(WebError::BadRequest(NOT_OPEN.into())),
        Err(Refusal::WrongEmail) => Err(WebError::Forbidden),
    }
}
