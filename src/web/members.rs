//! Members page: who is in the workspace, as what; invitations (one-time links, emailed
//! when SMTP is configured, within budgets); role changes, removal, leaving. The page behind
//! an invitation's link, and Accept, are `web::invitation`. The offboarding view of what a
//! removed member made, with Roll all, is `web::offboarding`. The rules of who may do what
//! are in `web::access`; which roles an admin may touch, in `Role::may_manage`.

use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult, UNVERIFIED};
use super::form::CsrfForm;
use super::keys::{html, secret_reveal};
use super::session::FormUse;
use super::{already_done, see_other, Dashboard, Layout};
use crate::domain::team::{InvitationBudget, Role, UserId, WorkspaceId};
use crate::domain::{time_util, Email};
use crate::service::invitations::{self, Invite};
use crate::state::AppState;
use crate::store::members::{InvitationRow, MemberRow, OverBudget, Spent};
use crate::store::StoreError;

/// Switches the session to another workspace of this person's.
pub async fn switch(user: Dashboard, form: CsrfForm) -> WebResult<HttpResponse> {
    let wanted = WorkspaceId::parse(form.get("workspace")).ok_or(WebError::NotFound)?;
    let ws = user
        .workspaces
        .iter()
        .find(|m| m.account_id == wanted)
        .ok_or(WebError::NotFound)?;
    user.session.set_workspace(ws.account_id)?;
    user.session
        .set_flash(&format!("Now working in “{}”.", ws.name))?;
    Ok(see_other("/keys"))
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    layout: Layout,
    workspace_id: i64,
    members: Vec<MemberView>,
    invitations: Vec<InvitationView>,
    roles: Vec<(&'static str, &'static str)>,
    /// The invitation just made: its link, shown to copy (also emailed when SMTP is on).
    link: Option<String>,
    /// Whom that invitation is for: `ana@example.com as Developer`.
    link_for: Option<String>,
    email: String,
    error: Option<String>,
    is_owner_alone: bool,
    /// The invitation budgets, said under the form.
    budget: InvitationBudget,
}

struct MemberView {
    user_id: i64,
    email: String,
    role: &'static str,
    since: String,
    /// The viewer of the page may change or remove this member.
    manageable: bool,
    is_me: bool,
}

struct InvitationView {
    id: i64,
    email: String,
    role: &'static str,
    expires: String,
}

fn member_view(user: &Dashboard, m: &MemberRow) -> MemberView {
    MemberView {
        user_id: m.user_id.0,
        email: m.email.clone(),
        role: m.role.label(),
        since: time_util::format_date(m.created_at),
        manageable: user.role.may_manage(m.role) && m.user_id != user.user,
        is_me: m.user_id == user.user,
    }
}

fn invitation_view(i: &InvitationRow) -> InvitationView {
    InvitationView {
        id: i.id,
        email: i.email.clone(),
        role: i.role.label(),
        expires: time_util::format_minute(i.expires_at),
    }
}

async fn members_page(
    state: &AppState,
    user: &Dashboard,
    link: Option<String>,
    email: String,
    error: Option<String>,
) -> WebResult<MembersPage> {
    let ws = user.workspace();
    let rows = state.store.members(ws).await?;
    let owners = rows.iter().filter(|m| m.role == Role::Owner).count();
    let invitations = if user.role >= Role::Admin {
        state.store.open_invitations(ws).await?
    } else {
        Vec::new()
    };
    Ok(MembersPage {
        layout: user.layout("members"),
        workspace_id: ws.0,
        members: rows.iter().map(|m| member_view(user, m)).collect(),
        invitations: invitations.iter().map(invitation_view).collect(),
        roles: Role::ALL
            .into_iter()
            .rev()
            .filter(|r| user.role.may_manage(*r))
            .map(|r| (r.as_str(), r.label()))
            .collect(),
        link,
        link_for: None,
        email,
        error,
        is_owner_alone: user.role == Role::Owner && owners == 1,
        budget: state.settings.invitation_budget,
    })
}

pub async fn list(state: web::Data<AppState>, user: Dashboard) -> WebResult<HttpResponse> {
    let page = members_page(&state, &user, None, String::new(), None).await?;
    html(StatusCode::OK, page.render()?)
}

fn role_field(user: &Dashboard, form: &CsrfForm) -> WebResult<Role> {
    let role = Role::parse(form.get("role"))
        .ok_or_else(|| WebError::BadRequest("Choose a role.".into()))?;
    if !user.role.may_manage(role) {
        return Err(WebError::Forbidden);
    }
    Ok(role)
}

/// Invites an email with a role, within the invitation budgets; an unverified person
/// cannot (`service::email_gate`). The answer shows the link once (`no-store`): only its
/// hash is kept. A refusal is the form again with its error, and stores and sends nothing.
pub async fn invite(
    state: web::Data<AppState>,
    user: Dashboard,
    req: HttpRequest,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let raw = form.get("email");
    let Ok(cleared) = user.cleared() else {
        return invite_refused(&state, &user, raw, StatusCode::FORBIDDEN, UNVERIFIED.into()).await;
    };
    let email = match Email::parse(raw) {
        Ok(e) => e,
        Err(e) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return invite_refused(&state, &user, raw, status, e.to_string()).await;
        }
    };
    let role = role_field(&user, &form)?;
    // A reload of the page with the link would re-send this form: inviting the same email
    // again replaces the invitation, so the link just copied would stop working.
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, "/members"),
    };
    let invite = Invite {
        workspace: user.workspace(),
        workspace_name: &user.account.name,
        inviter: user.user,
        inviter_email: &user.email,
        email: &email,
        role,
    };
    let mailer = state.mailer.as_deref();
    let made = invitations::invite(
        &state.store,
        &state.settings,
        mailer,
        &invite,
        &user.actor,
        cleared,
    );
    let token = match made.await? {
        Ok(token) => token,
        Err(over) => {
            drop(ticket); // nothing was done: the same form may try again later
            tracing::info!(account_id = %user.workspace(), spent = ?over.spent, "invitation refused: budget spent");
            let status = StatusCode::TOO_MANY_REQUESTS;
            let mut r =
                invite_refused(&state, &user, raw, status, over_budget(&over, &email)).await?;
            let secs = over.wait.as_secs().max(1);
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            return Ok(r);
        }
    };
    let link = format!(
        "{}/invitations/{}",
        super::keys::base_url(&state, &req),
        token.expose()
    );
    tracing::info!(account_id = %user.workspace(), "member invited");
    user.session.form_done(
        ticket,
        "/members",
        format!(
            "{} was invited as {}. The link was shown only once: if it was not copied, revoke \
             the invitation below and invite again.",
            email.as_str(),
            role.label()
        ),
    )?;
    let mut page = members_page(&state, &user, Some(link), String::new(), None).await?;
    page.link_for = Some(format!("{} as {}", email.as_str(), role.label()));
    Ok(secret_reveal(page.render()?))
}

/// The Members page again with the invite form's error and what was typed: nothing was made
/// or sent.
async fn invite_refused(
    state: &AppState,
    user: &Dashboard,
    typed: &str,
    status: StatusCode,
    error: String,
) -> WebResult<HttpResponse> {
    let page = members_page(state, user, None, typed.to_owned(), Some(error)).await?;
    html(status, page.render()?)
}

/// What a spent invitation budget says on the form: which one, and when to try again.
fn over_budget(over: &OverBudget, email: &Email) -> String {
    let (n, wait) = (over.limit, super::verify::duration(over.wait));
    match over.spent {
        Spent::Inviter => format!(
            "You have made {n} invitations in the last 24 hours, the most one person may \
             make in a day. Nothing was sent; you can invite again in {wait}."
        ),
        Spent::Workspace => format!(
            "This workspace has made {n} invitations in the last 24 hours, the most one \
             workspace may make in a day. Nothing was sent; you can invite again in {wait}."
        ),
        Spent::Address => format!(
            "{} has been invited {n} times in the last 24 hours, the most one address may \
             receive in a day. Nothing was sent; you can invite it again in {wait}.",
            email.as_str()
        ),
    }
}

pub(super) fn member_path(path: &str) -> WebResult<UserId> {
    WorkspaceId::parse(path)
        .map(|w| UserId(w.0))
        .ok_or(WebError::NotFound)
}

/// The target's current role, checked against what this member may manage.
async fn manageable(state: &AppState, user: &Dashboard, target: UserId) -> WebResult<Role> {
    let role = state
        .store
        .role_of(user.workspace(), target)
        .await?
        .ok_or(WebError::NotFound)?;
    if !user.role.may_manage(role) {
        return Err(WebError::Forbidden);
    }
    Ok(role)
}

pub async fn change_role(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let target = member_path(&path)?;
    manageable(&state, &user, target).await?;
    let role = role_field(&user, &form)?;
    match state
        .store
        .change_role(user.workspace(), target, role, &user.actor)
        .await
    {
        Ok(()) => user.session.set_flash("Role changed.")?,
        Err(StoreError::Conflict) => user
            .session
            .set_flash("A workspace needs at least one owner: make someone else owner first.")?,
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/members"))
}

/// Removes a member; their sessions lose this workspace on their next request. Opens the
/// offboarding view of what they made.
pub async fn remove(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
    _form: CsrfForm,
) -> WebResult<HttpResponse> {
    let target = member_path(&path)?;
    if target == user.user {
        return Err(WebError::BadRequest(
            "To leave, use Leave this workspace.".into(),
        ));
    }
    manageable(&state, &user, target).await?;
    match state
        .store
        .remove_member(user.workspace(), target, &user.actor)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            user.session
                .set_flash("A workspace needs at least one owner.")?;
            return Ok(see_other("/members"));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(account_id = %user.workspace(), "member removed");
    user.session.set_flash(
        "Member removed: their sessions no longer reach this workspace. Roll what they had access to below.",
    )?;
    Ok(see_other(&format!("/members/{}/offboarding", target.0)))
}

/// The member leaves the current workspace (not the last owner) and goes back to their own.
pub async fn leave(
    state: web::Data<AppState>,
    user: Dashboard,
    _form: CsrfForm,
) -> WebResult<HttpResponse> {
    match state
        .store
        .remove_member(user.workspace(), user.user, &user.actor)
        .await
    {
        Ok(()) => {
            user.session.set_workspace(user.user.personal_workspace())?;
            user.session
                .set_flash(&format!("You left “{}”.", user.account.name))?;
            Ok(see_other("/keys"))
        }
        Err(StoreError::Conflict) => {
            user.session
                .set_flash("You are the only owner: make someone else owner before leaving.")?;
            Ok(see_other("/members"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_invitation(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
    _form: CsrfForm,
) -> WebResult<HttpResponse> {
    let id = WorkspaceId::parse(&path).ok_or(WebError::NotFound)?.0;
    state
        .store
        .revoke_invitation(user.workspace(), id, &user.actor)
        .await?;
    user.session
        .set_flash("Invitation revoked: its link no longer works.")?;
    Ok(see_other("/members"))
}
