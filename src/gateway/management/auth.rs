//! Management keys at the door: `Authorization: Bearer lr-mk-…`, read from the database on
//! every request (no cache: a revoked key fails on the next request). An inference key here
//! is 403 `wrong_key_type`; a read-only key asking to change something is 403.
//!
//! A management key acts for the member who owns it (who made it, or to whom it was handed
//! over), with that member's *current* role: a member demoted to viewer has a read-only key
//! whatever it was made as, a developer's key changes only the keys they made, the audit
//! log needs an admin, and a key whose owner left the workspace is refused (removal also
//! revokes it: `Store::remove_member`). Keys the CLI made have no owner and act as made.

use actix_web::HttpRequest;

use crate::domain::audit::Actor;
use crate::domain::team::Role;
use crate::domain::{time_util, UserId, WorkspaceId};
use crate::gateway::auth::management_bearer;
use crate::gateway::error::ApiError;
use crate::service::email_gate::{self, Cleared, GateError};
use crate::state::AppState;
use crate::store::keys::KeyRow;
use crate::store::management_keys::{Access, ManagementKeyRow, ManagementKeyState};

/// What the request wants to do: reads pass any live key, writes need read-write, the
/// audit log needs an owner who is an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Read,
    Write,
    ReadAudit,
}

/// An authenticated management key; its account is the one the request acts on.
pub struct Manager {
    pub key: ManagementKeyRow,
    /// Its owner's role now; `None` for a key without an owner (made by the CLI).
    pub role: Option<Role>,
    /// The key as the audit log records it, with the request's address and agent.
    pub actor: Actor,
}

impl Manager {
    pub fn account_id(&self) -> WorkspaceId {
        self.key.account_id
    }

    /// Whether this key may change `key`: as its owner could on the dashboard (developers
    /// only the keys they made, `web::access`).
    pub fn may_change(&self, key: &KeyRow) -> bool {
        match self.role {
            None | Some(Role::Admin | Role::Owner) => true,
            Some(Role::Developer) => {
                key.created_by.is_some() && key.created_by.map(|u| u.0) == self.key.created_by
            }
            Some(Role::Viewer) => false,
        }
    }

    /// The email gate for the person behind this key (`service::email_gate`): what a
    /// request that mints a secret (create, roll) needs; 403 `email_unverified` otherwise.
    pub async fn cleared(&self, state: &AppState) -> Result<Cleared, ApiError> {
        let required = state.settings.require_email_verification;
        email_gate::check_management_key(&state.store, required, &self.key)
            .await
            .map_err(|e| match e {
                GateError::Unverified(_) => ApiError::email_unverified(),
                GateError::Store(e) => {
                    tracing::error!(error = %e, "management key's person lookup failed");
                    ApiError::internal()
                }
            })
    }
}

/// The least role whose member may do `intent` (a key's own read-only flag aside).
fn least_role(intent: Intent) -> Role {
    match intent {
        Intent::Read => Role::Viewer,
        Intent::Write => Role::Developer,
        Intent::ReadAudit => Role::Admin,
    }
}

pub async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    intent: Intent,
) -> Result<Manager, ApiError> {
    let now = time_util::now_ms();
    let found = async {
        let token = management_bearer(req.headers())?;
        let key = state
            .store
            .management_key_by_hash(&token.hash())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "management key lookup failed");
                ApiError::internal()
            })?;
        // Unknown and revoked read the same, as for API keys.
        let key = key.ok_or_else(|| ApiError::unauthorized("Invalid management key."))?;
        match key.state(now) {
            ManagementKeyState::Active => Ok(key),
            ManagementKeyState::Revoked => Err(ApiError::unauthorized("Invalid management key.")),
            ManagementKeyState::Expired => {
                Err(ApiError::unauthorized("This management key has expired."))
            }
        }
    }
    .await
    .map_err(|e| state.refusals.after_failed_auth(req, e))?;
    if intent == Intent::Write && found.access() == Access::ReadOnly {
        return Err(ApiError::read_only_key());
    }
    let role = match found.created_by {
        None => None,
        Some(owner) => {
            let role = state
                .store
                .role_of(found.account_id, UserId(owner))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "management key owner lookup failed");
                    ApiError::internal()
                })?;
            // Removal revokes the key; this holds even for one made before that rule.
            let role = role.ok_or_else(|| {
                state.refusals.after_failed_auth(
                    req,
                    ApiError::unauthorized(
                        "This management key's owner is no longer a member of the workspace.",
                    ),
                )
            })?;
            Some(role)
        }
    };
    if role.is_some_and(|r| r < least_role(intent)) {
        return Err(ApiError::owner_role(least_role(intent).label()));
    }
    if let Err(e) = state.store.touch_management_key(&found, now).await {
        tracing::warn!(error = %e, "could not record a management key's use");
    }
    let actor = Actor::management_key(found.id, &found.name, found.created_by.map(UserId))
        .from_client(
            state.proxies.client_ip(req),
            req.headers()
                .get(actix_web::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        );
    Ok(Manager {
        key: found,
        role,
        actor,
    })
}
