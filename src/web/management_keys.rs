//! Management keys page: list, create and roll (each with the one-time reveal), revoke.
//! Management keys (`lr-mk-…`) call the management API (`/api/v1/keys`, `/usage`), never the
//! gateway.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::WebResult;
use super::form::CsrfForm;
use super::keys::html;
use super::session::FormUse;
use super::{already_done, see_other, Dashboard, Layout};
use crate::domain::key_form::parse_name;
use crate::domain::public_id::ManagementKeyPublicId;
use crate::domain::time_util;
use crate::service::email_gate::Cleared;
use crate::service::management_keys;
use crate::state::AppState;
use crate::store::management_keys::{
    Access, ManagementKeyRow, ManagementKeyState, NewManagementKey, Via,
};
use crate::store::members::MemberRow;
use crate::web::error::WebError;

pub struct ManagementKeyView {
    pub id: String,
    pub name: String,
    pub masked: String,
    pub access: &'static str,
    pub state: &'static str,
    pub state_class: &'static str,
    pub live: bool,
    pub expires: String,
    pub created: String,
    pub created_via: &'static str,
    /// Whom it acts for, with their current role (a management key acts with it).
    pub acts_for: String,
    /// For a `<time>`: relative, the exact UTC time on hover.
    pub last_used_at: Option<super::when::When>,
}

impl ManagementKeyView {
    fn new(k: &ManagementKeyRow, now: i64, members: &[MemberRow]) -> Self {
        let acts_for = match k.created_by {
            None => "no one: made on the command line, it acts as made".to_owned(),
            Some(owner) => match members.iter().find(|m| m.user_id.0 == owner) {
                Some(m) => format!("{} ({})", m.email, m.role.label().to_lowercase()),
                None => "a former member (refused until handed over or rolled)".to_owned(),
            },
        };
        let (state, state_class) = match k.state(now) {
            ManagementKeyState::Active => ("Active", "ok"),
            ManagementKeyState::Expired => ("Expired", "warn"),
            ManagementKeyState::Revoked => ("Revoked", "bad"),
        };
        ManagementKeyView {
            id: k.public_id.clone(),
            name: k.name.clone(),
            masked: k.masked(),
            access: match k.access() {
                Access::ReadOnly => "Read-only",
                Access::ReadWrite => "Read and write",
            },
            state,
            state_class,
            live: k.revoked_at.is_none(),
            expires: k
                .expires_at
                .map_or_else(|| "Never".into(), |e| time_util::format_date(e - 1)),
            created: time_util::format_date(k.created_at),
            created_via: match k.created_via {
                Via::Cli => "command line",
                Via::Dashboard => "dashboard",
            },
            last_used_at: super::when::When::maybe(time_util::now_ms(), k.last_used_at),
            acts_for,
        }
    }
}

/// What was typed, for re-rendering with errors.
#[derive(Debug, Default)]
pub struct MkInput {
    pub name: String,
    pub read_only: bool,
    pub expires: String,
}

#[derive(Debug, Default)]
pub struct MkErrors {
    pub name: Option<String>,
    pub expires: Option<String>,
}

#[derive(Template)]
#[template(path = "management_keys.html")]
struct ManagementKeysPage {
    layout: Layout,
    keys: Vec<ManagementKeyView>,
    input: MkInput,
    errors: MkErrors,
    today: String,
}

async fn page(
    state: &AppState,
    user: &Dashboard,
    input: MkInput,
    errors: MkErrors,
    status: StatusCode,
) -> WebResult<HttpResponse> {
    let now = time_util::now_ms();
    let keys = state.store.list_management_keys(user.workspace()).await?;
    let members = state.store.members(user.workspace()).await?;
    let page = ManagementKeysPage {
        layout: user.layout("management"),
        keys: keys
            .iter()
            .map(|k| ManagementKeyView::new(k, now, &members))
            .collect(),
        input,
        errors,
        today: time_util::format_date(now),
    };
    html(status, page.render()?)
}

pub async fn list(state: web::Data<AppState>, user: Dashboard) -> WebResult<HttpResponse> {
    page(
        &state,
        &user,
        MkInput::default(),
        MkErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// Name (the API key name rules) and optional expiry (last day it works, UTC).
pub fn parse_new(input: &MkInput, today: time::Date) -> Result<NewManagementKey, MkErrors> {
    let mut errors = MkErrors::default();
    let name = parse_name(&input.name)
        .map_err(|e| errors.name = Some(e))
        .ok();
    let expires_at = match input.expires.trim() {
        "" => None,
        s => match time_util::parse_date(s) {
            Some(d) if d >= today => Some(time_util::date_start_ms(d) + 86_400_000),
            Some(_) => {
                errors.expires = Some("Choose today or a later date.".into());
                None
            }
            None => {
                errors.expires = Some("Enter a date as YYYY-MM-DD.".into());
                None
            }
        },
    };
    match name {
        Some(name) if errors.expires.is_none() => Ok(NewManagementKey {
            name,
            access: if input.read_only {
                Access::ReadOnly
            } else {
                Access::ReadWrite
            },
            expires_at,
        }),
        _ => Err(errors),
    }
}

#[derive(Template)]
#[template(path = "management_key_created.html")]
struct RevealPage {
    layout: Layout,
    name: String,
    token: String,
    base_url: String,
    /// A roll's reveal: the old token already stopped working.
    rolled: bool,
}

/// Answers with the reveal itself (no redirect, `no-store`), as the Keys page does; a
/// re-submitted form (used form id) goes back to the list: no second key.
pub async fn create(
    state: web::Data<AppState>,
    user: Dashboard,
    req: actix_web::HttpRequest,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let input = MkInput {
        name: form.get("name").to_owned(),
        read_only: !form.get("read_only").is_empty(),
        expires: form.get("expires").to_owned(),
    };
    let cleared = user.cleared()?;
    let today = time::OffsetDateTime::now_utc().date();
    let new = match parse_new(&input, today) {
        Ok(n) => n,
        Err(errors) => {
            return page(
                &state,
                &user,
                input,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, "/management-keys"),
    };
    let (row, token) = management_keys::create(
        &state.store,
        user.workspace(),
        user.user,
        &new,
        &user.actor,
        cleared,
    )
    .await?;
    tracing::info!(account_id = %user.workspace(), management_key = %row.public_id, "management key created");
    user.session.form_done(
        ticket,
        "/management-keys",
        format!(
            "the management key “{}” was created. Its token, {}, was shown only once: if it \
             was not copied, Roll it for a new one.",
            row.name,
            row.masked()
        ),
    )?;
    let page = RevealPage {
        layout: user.layout("management"),
        name: row.name,
        token: token.expose().to_owned(),
        base_url: super::keys::base_url(&state, &req),
        rolled: false,
    };
    Ok(super::keys::secret_reveal(page.render()?))
}

/// Gives the key a new token, shown once here (`no-store`); the old one stops working with
/// this answer: management keys have no grace period. A re-sent form rolls nothing again
/// (it would kill the token just copied): "Already done" on the list instead.
pub async fn roll(
    state: web::Data<AppState>,
    user: Dashboard,
    req: actix_web::HttpRequest,
    path: web::Path<String>,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let id = ManagementKeyPublicId::parse(&path).ok_or(WebError::NotFound)?;
    let cleared = user.cleared()?;
    // A key of another workspace (or none) is a 404 first, whatever the form says.
    let known = state.store.list_management_keys(user.workspace()).await?;
    if !known
        .iter()
        .any(|k| k.public_id == id.as_str() && k.revoked_at.is_none())
    {
        return Err(WebError::NotFound);
    }
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, "/management-keys"),
    };
    let (row, token) = roll_one(&state, &user, &id, cleared).await?;
    user.session.form_done(
        ticket,
        "/management-keys",
        format!(
            "“{}” was rolled. Its new token, {}, was shown only once: lost it? Roll again.",
            row.name,
            row.masked()
        ),
    )?;
    let page = RevealPage {
        layout: user.layout("management"),
        name: row.name,
        token,
        base_url: super::keys::base_url(&state, &req),
        rolled: true,
    };
    Ok(super::keys::secret_reveal(page.render()?))
}

/// Rolls one management key of the current workspace: its row and the new token (for the
/// reveal only).
pub(super) async fn roll_one(
    state: &AppState,
    user: &Dashboard,
    id: &ManagementKeyPublicId,
    cleared: Cleared,
) -> WebResult<(ManagementKeyRow, String)> {
    let (row, token) =
        management_keys::roll(&state.store, user.workspace(), id, &user.actor, cleared).await?;
    tracing::info!(account_id = %user.workspace(), management_key = %id.as_str(), "management key rolled");
    Ok((row, token.expose().to_owned()))
}

pub async fn revoke(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
    _f: CsrfForm,
) -> WebResult<HttpResponse> {
    let id = ManagementKeyPublicId::parse(&path).ok_or(WebError::NotFound)?;
    let name = state
        .store
        .revoke_management_key(user.workspace(), &id, &user.actor)
        .await?;
    tracing::info!(account_id = %user.workspace(), management_key = %id.as_str(), "management key revoked");
    user.session.set_flash(&format!(
        "Revoked “{name}”. Requests with its token now fail."
    ))?;
    Ok(see_other("/management-keys"))
}
