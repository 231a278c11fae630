//! Management keys made and rolled on the dashboard (the Management keys page, and Roll all
//! when offboarding): each reveals a new `lr-mk-` token, so each takes the email gate's
//! [`Cleared`]. The command line makes its keys through the store directly (an operator's
//! act: `service::email_gate`).

use super::email_gate::Cleared;
use crate::domain::audit::Actor;
use crate::domain::public_id::ManagementKeyPublicId;
use crate::domain::{ManagementToken, UserId, WorkspaceId};
use crate::store::management_keys::{CreatedVia, ManagementKeyRow, NewManagementKey};
use crate::store::{Store, StoreError};

/// Makes a management key of `ws` for `person`; its token goes back for the one reveal.
pub async fn create(
    store: &Store,
    ws: WorkspaceId,
    person: UserId,
    new: &NewManagementKey,
    actor: &Actor,
    _: Cleared,
) -> Result<(ManagementKeyRow, ManagementToken), StoreError> {
    let token = ManagementToken::generate();
    let row = store
        .create_management_key(ws, CreatedVia::Dashboard(person.0), new, &token, actor)
        .await?;
    Ok((row, token))
}

/// Gives a live management key of `ws` a new token; the old one stops at once.
pub async fn roll(
    store: &Store,
    ws: WorkspaceId,
    id: &ManagementKeyPublicId,
    actor: &Actor,
    _: Cleared,
) -> Result<(ManagementKeyRow, ManagementToken), StoreError> {
    let token = ManagementToken::generate();
    let row = store.roll_management_key(ws, id, &token, actor).await?;
    Ok((row, token))
}
