//! Offboarding: what a member made (API keys they created or rolled, management keys they
//! created), and Roll all, which gives each a new secret at once, shown once.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::form::CsrfForm;
use super::keys::{html, secret_reveal};
use super::members::member_path;
use super::session::FormUse;
use super::{already_done, Dashboard, Layout};
use crate::domain::public_id::ManagementKeyPublicId;
use crate::domain::roll_form::Retirement;
use crate::domain::team::UserId;
use crate::domain::time_util;
use crate::state::AppState;
use crate::store::members::OffboardKey;

#[derive(Template)]
#[template(path = "offboarding.html")]
struct OffboardingPage {
    layout: Layout,
    member: String,
    member_id: i64,
    keys: Vec<OffboardKey>,
    management_keys: Vec<(String, String, String)>,
}

async fn member_email(state: &AppState, target: UserId) -> WebResult<String> {
    Ok(state
        .store
        .account(target.personal_workspace())
        .await?
        .email)
}

pub async fn offboarding(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<String>,
) -> WebResult<HttpResponse> {
    let target = member_path(&path)?;
    let (keys, mks) = state.store.offboarding(user.workspace(), target).await?;
    let page = OffboardingPage {
        layout: user.layout("members"),
        member: member_email(&state, target).await?,
        member_id: target.0,
        keys,
        management_keys: mks
            .iter()
            .map(|m| (m.public_id.clone(), m.name.clone(), m.masked()))
            .collect(),
    };
    html(StatusCode::OK, page.render()?)
}

#[derive(Template)]
#[template(path = "rolled_all.html")]
struct RolledAllPage {
    layout: Layout,
    member: String,
    /// Management keys that could not be rolled (the page says so: roll them one by one).
    failed: Vec<String>,
    /// API keys and their new secrets, then management keys and their new tokens.
    groups: [RolledGroup; 2],
}

/// Names and new secrets under a heading; `id` prefixes the fields' ids.
type RolledGroup = (&'static str, &'static str, Vec<(String, String)>);

/// Rolls every live key the member created or rolled and every live management key they
/// created: each gets a new secret, shown once here. An API key's previous secret retires
/// when its traffic stops (as the Roll form's default), so nothing breaks before the new
/// secrets are deployed; a management key's old token stops at once (no grace period).
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
    let cleared = user.cleared()?;
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, &back),
    };
    let now = time_util::now_ms();
    let retire = Retirement::WhenQuiet {
        quiet_ms: 60 * 60_000,
        deadline_ms: now + 7 * 86_400_000,
    };
    // API keys in one transaction: all rolled, or none (nothing made that is never shown).
    let ids: Vec<_> = keys.iter().map(|k| k.id).collect();
    let tokens = crate::service::keys::roll_all(
        &state.store,
        user.workspace(),
        &ids,
        retire,
        &user.actor,
        cleared,
    )
    .await?;
    let rolled: Vec<(String, String)> = keys
        .into_iter()
        .zip(tokens)
        .map(|(k, t)| (k.name, t.expose().to_owned()))
        .collect();
    // Management keys after: one that fails is said on the page, and the API keys' new
    // secrets, already made, are still shown.
    let mut management_keys = Vec::with_capacity(mks.len());
    let mut failed = Vec::new();
    for m in mks {
        let rolled_one = match ManagementKeyPublicId::parse(&m.public_id) {
            Some(id) => super::management_keys::roll_one(&state, &user, &id, cleared).await,
            None => Err(WebError::NotFound),
        };
        match rolled_one {
            Ok((row, token)) => management_keys.push((row.name, token)),
            Err(e) => {
                tracing::error!(error = %e, "roll all: a management key could not be rolled");
                failed.push(m.name);
            }
        }
    }
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
        failed,
        layout: user.layout("members"),
        member,
        groups: [
            ("API keys", "token", rolled),
            ("Management keys", "mk-token", management_keys),
        ],
    };
    Ok(secret_reveal(page.render()?))
}
