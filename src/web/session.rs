//! What the dashboard keeps in a session: the account id, the CSRF token, one flash
//! message, and the state-changing forms already used with what each did (so a re-submitted
//! Create, Roll or invitation never acts twice: [`TypedSession::claim_form`]).

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
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
/// An action that undoes what the flash reports (Disable: Enable), offered beside it.
const UNDO: &str = "flash_undo";

pub use crate::domain::token::random_token;

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

    /// Offers, beside the next flash, a button that undoes what it reports: a POST to
    /// `action` labelled `label` (from the server's own routes, never from input).
    pub fn set_undo(&self, action: &str, label: &str) -> SessionResult<()> {
        self.0
            .insert(
                UNDO,
                Undo {
                    action: action.to_owned(),
                    label: label.to_owned(),
                },
            )
            .map_err(WebError::internal)
    }

    /// The undo of the flash, removed (as [`TypedSession::take_flash`]).
    pub fn take_undo(&self) -> Option<Undo> {
        self.0.get::<Undo>(UNDO).ok().flatten()?;
        self.0.remove_as::<Undo>(UNDO).and_then(Result::ok)
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

    /// Claims a state-changing form's one-time id for `action` (the form's path): the first
    /// submission gets a [`FormTicket`] to do the work and then record what it did
    /// ([`TypedSession::form_done`]); every later submission of the same form (a reload that
    /// re-sends the POST, Back then Forward, a double click) gets [`FormUse::Repeat`] with
    /// that record, and does nothing again. An id this server could not have issued
    /// ([`random_token`]), or none, counts as a repeat with no record: nothing a client
    /// invents is stored in its session.
    ///
    /// One id serves every form of a page ([`super::Layout::form_id`]): the slot is the pair
    /// of action and id, so two different forms of one page are two slots.
    pub fn claim_form(&self, action: &str, form_id: &str) -> SessionResult<FormUse> {
        if form_id.len() != 32 || !form_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(FormUse::Repeat(None));
        }
        let slot = format!("{action} {form_id}");
        let mut used = self.used_forms()?;
        if let Some(u) = used.iter().find(|u| u.slot == slot) {
            return Ok(FormUse::Repeat(u.done.clone()));
        }
        used.push(UsedForm {
            slot: slot.clone(),
            done: None,
        });
        self.keep_used_forms(used)?;
        Ok(FormUse::First(FormTicket {
            slot,
            session: TypedSession(self.0.clone()),
            done: false,
        }))
    }

    /// Records what a claimed form did, for its repeats to show. Never a secret: a repeat
    /// shows a token's last characters at most.
    pub fn form_done(
        &self,
        mut ticket: FormTicket,
        location: &str,
        message: String,
    ) -> SessionResult<()> {
        ticket.done = true;
        let mut used = self.used_forms()?;
        if let Some(u) = used.iter_mut().find(|u| u.slot == ticket.slot) {
            u.done = Some(FormDone {
                location: location.to_owned(),
                message,
            });
        }
        self.keep_used_forms(used)
    }

    fn used_forms(&self) -> SessionResult<Vec<UsedForm>> {
        Ok(self
            .0
            .get(USED_FORMS)
            .map_err(WebError::internal)?
            .unwrap_or_default())
    }

    fn keep_used_forms(&self, mut used: Vec<UsedForm>) -> SessionResult<()> {
        let drop = used.len().saturating_sub(MAX_USED_FORMS);
        used.drain(..drop);
        self.0.insert(USED_FORMS, used).map_err(WebError::internal)
    }
}

/// How many used forms a session remembers (the newest): enough for any page a person can
/// still reload, and a bound on the session row.
const MAX_USED_FORMS: usize = 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct UsedForm {
    slot: String,
    done: Option<FormDone>,
}

/// A button beside a flash that undoes what it reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Undo {
    pub action: String,
    pub label: String,
}

/// What a used form did: where its result lives and what to say about it on a repeat.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FormDone {
    pub location: String,
    pub message: String,
}

/// The first submission of a form: the right to act, once. Dropped without
/// [`TypedSession::form_done`] (a refused field, a name taken, a failure), it gives the form
/// back: the action did nothing, so sending the form again tries again.
#[must_use = "record what the form did with TypedSession::form_done"]
pub struct FormTicket {
    slot: String,
    session: TypedSession,
    done: bool,
}

impl Drop for FormTicket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Ok(mut used) = self.session.used_forms() {
            used.retain(|u| u.slot != self.slot);
            let _ = self.session.keep_used_forms(used);
        }
    }
}

pub enum FormUse {
    First(FormTicket),
    /// Submitted before: what it did (`None`: unknown, or it failed before saying).
    Repeat(Option<FormDone>),
}

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(TypedSession(req.get_session())))
    }
}
