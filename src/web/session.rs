//! What the dashboard keeps in a session: the account id, the CSRF token, one flash
//! message, and the ids of New key forms already used (so a re-submitted Create never makes
//! a second key).

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use rand::distr::{Alphanumeric, SampleString};
use std::future::{ready, Ready};

use super::error::WebError;
use crate::domain::{UserId, WorkspaceId};

/// The store reads this entry to know whose session a row is (`store::sessions`).
const USER_ID: &str = crate::store::sessions::ACCOUNT_ID_KEY;
const CSRF: &str = "csrf";
/// The workspace the person is working in (their own when absent).
const WORKSPACE: &str = "workspace";
const FLASH: &str = "flash";
/// A flash that informs rather than confirms a success (shown neutral, not green).
const INFO: &str = "flash_info";
const USED_FORMS: &str = "used_forms";

pub fn random_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

pub struct TypedSession(pub Session);

type SessionResult<T> = Result<T, WebError>;

impl TypedSession {
    /// The person signed in.
    pub fn user_id(&self) -> SessionResult<Option<UserId>> {
        self.0.get(USER_ID).map_err(WebError::internal)
    }

    pub fn workspace_id(&self) -> SessionResult<Option<WorkspaceId>> {
        self.0.get(WORKSPACE).map_err(WebError::internal)
    }

    /// Switches workspace (membership checked by the caller and on every request after).
    pub fn set_workspace(&self, id: WorkspaceId) -> SessionResult<()> {
        self.0.insert(WORKSPACE, id).map_err(WebError::internal)
    }

    /// Signs in: a new session id (no fixation) and a new CSRF token.
    pub fn log_in(&self, user: UserId) -> SessionResult<()> {
        self.0.renew();
        // Another person may have used this browser's session: start in their own workspace.
        self.0.remove(WORKSPACE);
        self.0.insert(USER_ID, user).map_err(WebError::internal)?;
        self.0
            .insert(CSRF, random_token())
            .map_err(WebError::internal)
    }

    /// Ends the session: the server-side row is deleted, so the old cookie is worthless.
    pub fn log_out(&self) {
        self.0.purge();
    }

    pub fn csrf_token(&self) -> SessionResult<Option<String>> {
        self.0.get(CSRF).map_err(WebError::internal)
    }

    /// The CSRF token for forms on the page being rendered, created on first use.
    pub fn ensure_csrf_token(&self) -> SessionResult<String> {
        if let Some(t) = self.csrf_token()? {
            return Ok(t);
        }
        let t = random_token();
        self.0.insert(CSRF, &t).map_err(WebError::internal)?;
        Ok(t)
    }

    pub fn set_flash(&self, message: &str) -> SessionResult<()> {
        self.0.insert(FLASH, message).map_err(WebError::internal)
    }

    /// The flash message, removed. Reads first: removing marks the session changed even when
    /// there was nothing to remove, and an anonymous session must not be written for nothing.
    pub fn take_flash(&self) -> Option<String> {
        self.0.get::<String>(FLASH).ok().flatten()?;
        self.0.remove_as::<String>(FLASH).and_then(Result::ok)
    }

    /// A flash that tells something (no change was made), shown as neutral.
    pub fn set_info(&self, message: &str) -> SessionResult<()> {
        self.0.insert(INFO, message).map_err(WebError::internal)
    }

    /// The informational flash, removed (as [`TypedSession::take_flash`]).
    pub fn take_info(&self) -> Option<String> {
        self.0.get::<String>(INFO).ok().flatten()?;
        self.0.remove_as::<String>(INFO).and_then(Result::ok)
    }

    /// Records a New key form as used. Returns false if it was used before, or is not a
    /// form id this server could have issued ([`random_token`]): nothing a client invents is
    /// stored in its session.
    pub fn consume_form(&self, form_id: &str) -> SessionResult<bool> {
        if form_id.len() != 32 || !form_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(false);
        }
        let mut used: Vec<String> = self
            .0
            .get(USED_FORMS)
            .map_err(WebError::internal)?
            .unwrap_or_default();
        if used.iter().any(|u| u == form_id) {
            return Ok(false);
        }
        used.push(form_id.to_owned());
        let keep = used.len().saturating_sub(20);
        used.drain(..keep);
        self.0
            .insert(USED_FORMS, used)
            .map_err(WebError::internal)?;
        Ok(true)
    }
}

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(TypedSession(req.get_session())))
    }
}
