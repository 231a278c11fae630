//! Offboarding: what a member made (API keys they created or rolled, themselves or through
//! a management key of theirs, and the management keys they own), Roll all, which gives
//! each a new secret at once, shown once, with the old secrets stopping at a fixed time
//! (24 hours by default, or now: not "when quiet", which a departed member who keeps
//! using a key would keep alive), and handing a management key over to another admin
//! (removal revokes the ones not handed over).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::WebResult;
use super::form::CsrfForm;
use super::keys::{html, secret_reveal};
use super::members::member_path;
use super::session::FormUse;
use super::{already_done, Dashboard, Layout};
use crate::domain::public_id::ManagementKeyPublicId;
use crate::domain::roll_form::Retirement;
use crate::domain::team::{Role, UserId};
use crate::domain::time_util;
use crate::state::AppState;
use crate::store::members::OffboardKey;

#[derive(Template)]
#[template(path = "offboarding.html")]
struct OffboardingPage {
    layout: Layout,
    member: String,
    member_id: i64,
    /// Still a member (their management keys can be handed over).
    current: bool,
    keys: Vec<OffboardKey>,
    management_keys: Vec<(String, String, String)>,
    /// Admins and owners other than the member: who a management key may go to.
    heirs: Vec<(i64, String)>,
    /// Roll all's deadline field, and what was wrong with it.
    hours: String,
    error: Option<String>,
}

/// Roll all's default: the old secrets stop 24 hours after the roll.
const DEFAULT_HOURS: &str = "24";
/// The latest Roll all lets the old secrets live: a week.
const MAX_HOURS: i64 = 7 * 24;

/// When Roll all's old secrets stop: `now`, or `deadline` in `hours` (1 to a week).
fn parse_retirement(retire: &str, hours: &str, now: i64) -> Result<Retirement, String> {
    match retire {
        "now" => Ok(Retirement::Now),
        "deadline" | "" => {
            let hours = hours.trim();
            let hours = if hours.is_empty() {
                DEFAULT_HOURS
            } else {
                hours
            };
            match hours.parse::<i64>() {
                Ok(h) if (1..=MAX_HOURS).contains(&h) => Ok(Retirement::At(now + h * 3_600_000)),
                _ => Err(format!(
                    "The old secrets' deadline is a whole number of hours from 1 to {MAX_HOURS}."
                )),
            }
        }
        _ => Err("Choose when the old secrets stop working.".into()),
    }
}

async fn member_email(state: &AppState, target: UserId) -> WebResult<String> {
    Ok(state
        .store
        .account(target.personal_workspace())
        .await?
        .email)
}

async fn page(
    state: &AppState,
    user: &Dashboard,
    target: UserId,
    hours: String,
    error: Option<String>,
) -> WebResult<HttpResponse> {
    let (keys, mks) = state.store.offboarding(user.workspace(), target).await?;
    let members = state.store.members(user.workspace()).await?;
    let page = OffboardingPage {
        layout: user.layout("members"),
        member: member_email(state, target).await?,
        member_id: target.0,
        current: members.iter().any(|m| m.user_id == target),
        keys,
        management_keys: mks
            .iter()
            .map(|m| (m.public_id.clone(), m.name.clone(), m.masked()))
            .collect(),
        heirs: members
            .iter()
            .filter(|m| m.user_id != target && m.role >= Role::Admin)
            .map(|m| (m.user_id.0, m.email.clone()))
            .collect(),
        hours,
        error: error.clone(),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html(status, page.render()?)
}

pub async fn offboarding(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
) -> WebResult<HttpResponse> {
    let target = member_path(&path)?;
    page(&state, &user, target, DEFAULT_HOURS.into(), None).await
}

/// Hands one of the member's management keys to another admin or owner: it keeps working,
/// now for them, and survives the member's removal.
pub async fn hand_over(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let target = member_path(&path)?;
    // As the offboarding page: someone who never was a member here is a 404.
    state.store.offboarding(user.workspace(), target).await?;
    let back = format!("/members/{}/offboarding", target.0);
    // Whether the key is this member's live one is the store's check (`NotFound`).
    let not_theirs = || -> WebResult<HttpResponse> {
        user.session
            .set_flash("That management key is no longer this member's: nothing changed.")?;
        Ok(super::see_other(&back))
    };
    let Some(key) = ManagementKeyPublicId::parse(form.get("key")) else {
        return not_theirs();
    };
    let heir = form
        .get("to")
        .parse::<i64>()
        .ok()
        .filter(|id| *id != target.0)
        .map(UserId);
    let Some(heir) = heir else {
        let e = "Choose the admin or owner who takes the key over.".to_owned();
        return page(&state, &user, target, DEFAULT_HOURS.into(), Some(e)).await;
    };
    match state
        .store
        .hand_over_management_key(user.workspace(), &key, target, heir, &user.actor)
        .await
    {
        Ok(name) => {
            user.session.set_flash(&format!(
                "The management key “{name}” now acts for its new owner."
            ))?;
            Ok(super::see_other(&back))
        }
        // A repeat (already handed over) or a key of someone else: nothing to do here.
        Err(crate::store::StoreError::NotFound) => not_theirs(),
        Err(crate::store::StoreError::Conflict) => {
            let e = "Only a member who is an admin or owner now can take a management key over."
                .to_owned();
            page(&state, &user, target, DEFAULT_HOURS.into(), Some(e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "rolled_all.html")]
struct RolledAllPage {
    layout: Layout,
    member: String,
    /// API keys and their new secrets, then management keys and their new tokens.
    groups: [RolledGroup; 2],
}

/// Names and new secrets under a heading; `id` prefixes the fields' ids.
type RolledGroup = (&'static str, &'static str, Vec<(String, String)>);

/// Rolls every live key the member created or rolled and every live management key they
/// own: each gets a new secret, shown once here. An API key's previous secret stops at the
/// form's deadline (24 hours by default) or now, used or not; a management key's old
/// token stops at once (no grace period).
pub async fn roll_all(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let target = member_path(&path)?;
    // The reads come before the claim: someone who never was a member of this workspace is a
    // 404 (`Store::offboarding`), whatever the form says.
    let (keys, mks) = state.store.offboarding(user.workspace(), target).await?;
    let member = member_email(&state, target).await?;
    let back = format!("/members/{}/offboarding", target.0);
    let now = time_util::now_ms();
    let retire = match parse_retirement(form.get("retire"), form.get("hours"), now) {
        Ok(r) => r,
        Err(e) => return page(&state, &user, target, form.get("hours").into(), Some(e)).await,
    };
    let cleared = user.cleared()?;
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, &back),
    };
    // One transaction: every key rolled, or none (nothing made that is never shown).
    let ids: Vec<_> = keys.iter().map(|k| k.id).collect();
    let mk_ids: Vec<_> = mks
        .iter()
        .filter_map(|m| ManagementKeyPublicId::parse(&m.public_id))
        .collect();
    let done = crate::service::keys::roll_all(
        &state.store,
        user.workspace(),
        &ids,
        &mk_ids,
        retire,
        &user.actor,
        cleared,
    )
    .await?;
    let rolled: Vec<(String, String)> = keys
        .into_iter()
        .zip(done.keys)
        .map(|(k, t)| (k.name, t.expose().to_owned()))
        .collect();
    let management_keys: Vec<(String, String)> = done
        .management
        .into_iter()
        .map(|(row, t)| (row.name, t.expose().to_owned()))
        .collect();
    tracing::info!(account_id = %user.workspace(), api_keys = rolled.len(),
        management_keys = management_keys.len(), "roll all");
    user.session.form_done(
        ticket,
        &back,
        format!(
            "{} API key(s) and {} management key(s) of {member} were rolled. Their new secrets \
             were shown only once: lost one? Roll that key again.",
            rolled.len(),
            management_keys.len()
        ),
    )?;
    let page = RolledAllPage {
        layout: user.layout("members"),
        member,
        groups: [
            ("API keys", "token", rolled),
            ("Management keys", "mk-token", management_keys),
        ],
    };
    Ok(secret_reveal(page.render()?))
}
