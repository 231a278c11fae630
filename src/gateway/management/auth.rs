//! Management keys at the door: `Authorization: Bearer lr-mk-…`, read from the database on
//! every request (no cache: a revoked key fails on the next request). An inference key here
//! is 403 `wrong_key_type`; a read-only key asking to change something is 403.

use actix_web::HttpRequest;

use crate::domain::audit::Actor;
use crate::domain::{time_util, WorkspaceId};
use crate::gateway::auth::management_bearer;
use crate::gateway::error::ApiError;
use crate::service::email_gate::{self, Cleared, GateError};
use crate::state::AppState;
use crate::store::management_keys::{Access, ManagementKeyRow, ManagementKeyState};

/// What the request wants to do: reads pass any live key, writes need read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Read,
    Write,
}

/// An authenticated management key; its account is the one the request acts on.
pub struct Manager {
    pub key: ManagementKeyRow,
    /// The key as the audit log records it, with the request's address and agent.
    pub actor: Actor,
}

impl Manager {
    pub fn account_id(&self) -> WorkspaceId {
        self.key.account_id
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
    if let Err(e) = state.store.touch_management_key(&found, now).await {
        tracing::warn!(error = %e, "could not record a management key's use");
    }
    let actor = Actor::management_key(found.id, &found.name).from_client(
        state.proxies.client_ip(req),
        req.headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    Ok(Manager { key: found, actor })
}
