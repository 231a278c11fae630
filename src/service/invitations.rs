//! Invitations: made within the budgets (per inviter, per workspace, per address: the
//! settings' [`crate::domain::team::InvitationBudget`], counted by the store from the
//! database's rows), mailed when mail is configured, and accepted. Making and accepting
//! both take the email gate's [`Cleared`] (`service::email_gate`): an unverified person
//! neither sends invitations from our address nor joins through one, since nothing would
//! prove that they own the invited address.

use super::email_gate::Cleared;
use crate::config::Settings;
use crate::domain::audit::Actor;
use crate::domain::team::Role;
use crate::domain::{Email, UserId, VerifyToken, WorkspaceId};
use crate::mail::{InvitationMail, Mailer};
use crate::store::members::{NewInvitation, OverBudget, Refusal};
use crate::store::{Store, StoreError};

/// An invitation to make: who invites whom, where, as what.
pub struct Invite<'a> {
    pub workspace: WorkspaceId,
    /// The workspace's name: chosen by its members, so the mail quotes it as theirs.
    pub workspace_name: &'a str,
    pub inviter: UserId,
    /// The inviter's email: the mail says who sent it.
    pub inviter_email: &'a str,
    pub email: &'a Email,
    pub role: Role,
}

/// Makes the invitation within the budgets and mails its link (in the background) when
/// `smtp_url` and `public_base_url` are set; the link's token goes back to be shown once.
/// A spent budget stores and sends nothing.
pub async fn invite(
    store: &Store,
    settings: &Settings,
    mailer: Option<&Mailer>,
    invite: &Invite<'_>,
    actor: &Actor,
    _: Cleared,
) -> Result<Result<VerifyToken, OverBudget>, StoreError> {
    let token = VerifyToken::generate();
    let hash = token.hash();
    let new = NewInvitation {
        workspace: invite.workspace,
        email: invite.email,
        role: invite.role,
        token: &hash,
        invited_by: invite.inviter,
    };
    if let Err(over) = store
        .create_invitation(&new, settings.invitation_budget, actor)
        .await?
    {
        return Ok(Err(over));
    }
    // Only with the operator's `public_base_url`: never a link built from the request's
    // Host header, which a client chooses.
    if let (Some(mailer), Some(base)) = (mailer, &settings.public_base_url) {
        mailer.send_invitation(InvitationMail {
            to: invite.email.clone(),
            workspace: invite.workspace_name.to_owned(),
            inviter: invite.inviter_email.to_owned(),
            role: invite.role.label(),
            link: format!(
                "{}/invitations/{}",
                base.trim_end_matches('/'),
                token.expose()
            ),
            verify_first: settings.require_email_verification,
        });
    }
    Ok(Ok(token))
}

/// Accepts the invitation behind `token` for `person` (signed in as `email`).
pub async fn accept(
    store: &Store,
    token: &VerifyToken,
    person: UserId,
    email: &str,
    actor: &Actor,
    _: Cleared,
) -> Result<Result<WorkspaceId, Refusal>, StoreError> {
    store
        .accept_invitation(&token.hash(), person, email, actor)
        .await
}
