//! A key's page (its secrets, last use, age) and its lifecycle: Roll (a new secret for the
//! same key, revealed once like Create), Retire now and Extend for the previous secret.
//!
//! Roll carries a one-time form id as Create does: reloading the reveal re-sends the POST,
//! and a second roll would replace the secret the person has just copied. The repeat says
//! "Already done" on the key's page instead, naming the new secret by its last characters.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::WebResult;
use super::form::CsrfForm;
use super::keys::{html, reveal, KeyView};
use super::live_key::LiveKey;
use super::session::FormUse;
use super::{already_done, see_other, Dashboard, Layout};
use crate::domain::roll_form::RollFormInput;
use crate::domain::{time_util, KeyId};
use crate::service::keys;
use crate::state::AppState;
use crate::store::key_secrets::{Retirement, SecretRow};
use crate::store::keys::KeyRow;
use crate::store::StoreError;

/// How much "Extend" adds to the previous secret's deadline.
pub const EXTEND_MS: i64 = 24 * 3_600_000;
/// Extends per secret: a week in all. A secret someone still needs past that is a sign the
/// roll is not finished, and the answer is to finish it, not to keep the old one by hand.
pub const MAX_EXTENDS: i64 = 7;

/// A secret as the key page shows it.
pub struct SecretView {
    pub masked: String,
    pub current: bool,
    pub created: String,
    pub last_used_at: Option<super::when::When>,
    /// Where its last request came from, coarsened.
    pub client: Option<String>,
    /// When a previous secret retires, in words.
    pub retires: Option<String>,
    /// Reported as leaked: where (or that the place is unknown).
    pub leaked: Option<String>,
}

impl SecretView {
    pub fn new(s: &SecretRow, now: i64) -> Self {
        let life = s.life();
        let retires = (!s.is_current()).then(|| {
            let due = life.due().map_or_else(
                || "when retired by hand".to_owned(),
                |d| format!("{} ({})", time_util::relative(now, d), time_util::format_minute(d)),
            );
            match (s.quiet_ms, s.retires_at) {
                (Some(q), Some(deadline)) => format!(
                    "Retires once it has served no request for {}: {due}, as things stand; at the latest {}.",
                    quiet_words(q),
                    time_util::format_minute(deadline)
                ),
                _ => format!("Retires {due}."),
            }
        });
        SecretView {
            masked: s.masked(),
            current: s.is_current(),
            created: time_util::format_minute(s.created_at),
            last_used_at: super::when::When::maybe(now, s.last_used_at),
            client: s.last_client.clone(),
            retires,
            leaked: s.quarantined_at.map(|_| {
                s.quarantine_url
                    .clone()
                    .unwrap_or_else(|| "an unknown place".into())
            }),
        }
    }
}

fn quiet_words(ms: i64) -> String {
    if ms % 60_000 == 0 {
        let m = ms / 60_000;
        format!("{m} minute{}", if m == 1 { "" } else { "s" })
    } else {
        format!("{} seconds", ms / 1000)
    }
}

#[derive(Template)]
#[template(path = "key.html")]
struct KeyPage {
    layout: Layout,
    key: KeyView,
    secrets: Vec<SecretView>,
    has_previous: bool,
    /// The key's own audit history, newest first (admins see all of it on the Audit page).
    events: Vec<super::audit::EventView>,
}

pub async fn show(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
) -> WebResult<HttpResponse> {
    let now = time_util::now_ms();
    let secrets = state.store.key_secrets(user.workspace(), key.id).await?;
    let activity = state
        .store
        .key_activity(user.workspace(), Some(key.id))
        .await?;
    let view = KeyView::new(&key, now)
        .with_secrets(&key, &secrets, &state.settings, now)
        .with_activity(activity.get(&key.id), now);
    let history = crate::domain::audit::AuditFilter {
        key_id: Some(key.id),
        limit: 20,
        ..Default::default()
    };
    let events = state
        .store
        .audit_page(user.workspace(), &history)
        .await?
        .events;
    let page = KeyPage {
        events: events.iter().map(super::audit::EventView::new).collect(),
        layout: user.layout("keys"),
        key: view,
        has_previous: secrets.iter().any(|s| !s.is_current()),
        secrets: secrets.iter().map(|s| SecretView::new(s, now)).collect(),
    };
    html(StatusCode::OK, page.render()?)
}

#[derive(Template)]
#[template(path = "key_roll.html")]
struct RollPage {
    layout: Layout,
    id: KeyId,
    name: String,
    input: RollFormInput,
    error: Option<String>,
    pending: Option<String>,
}

async fn roll_page(
    state: &AppState,
    user: &Dashboard,
    key: &KeyRow,
    input: RollFormInput,
    error: Option<String>,
) -> WebResult<RollPage> {
    let now = time_util::now_ms();
    let secrets = state.store.key_secrets(user.workspace(), key.id).await?;
    let pending = secrets
        .iter()
        .find(|s| !s.is_current() && s.is_live(now))
        .map(SecretRow::masked);
    Ok(RollPage {
        layout: user.layout("keys"),
        id: key.id,
        name: key.name.clone(),
        input,
        error,
        pending,
    })
}

pub async fn roll_form(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
) -> WebResult<HttpResponse> {
    let page = roll_page(&state, &user, &key, RollFormInput::defaults(), None).await?;
    html(StatusCode::OK, page.render()?)
}

/// Rolls and answers with the reveal of the new secret (no redirect, `no-store`).
pub async fn roll(
    state: web::Data<AppState>,
    req: HttpRequest,
    LiveKey { user, key }: LiveKey,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let input = RollFormInput {
        retire: form.get("retire").to_owned(),
        quiet_minutes: form.get("quiet_minutes").to_owned(),
        deadline_days: form.get("deadline_days").to_owned(),
        at: form.get("at").to_owned(),
    };
    let cleared = user.cleared()?;
    let retire: Retirement = match input.parse(time_util::now_ms()) {
        Ok(r) => r,
        Err(message) => {
            let page = roll_page(&state, &user, &key, input, Some(message)).await?;
            return html(StatusCode::UNPROCESSABLE_ENTITY, page.render()?);
        }
    };
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, &format!("/keys/{}", key.id)),
    };
    let token = keys::roll(
        &state.store,
        user.workspace(),
        key.id,
        retire,
        &user.actor,
        cleared,
    )
    .await?;
    tracing::info!(account_id = %user.workspace(), key_id = %key.id, "key rolled");
    user.session.form_done(
        ticket,
        &format!("/keys/{}", key.id),
        format!(
            "“{}” was rolled. Its new secret, {}, was shown only once: lost it? Roll again.",
            key.name,
            token.masked()
        ),
    )?;
    reveal(&state, &user, &req, &key, &token, true)
}

/// Retires the previous secret now, unless it served a request in the last hour: then a page
/// asks first (its button sends `confirm=1`): whatever still uses it fails from then on.
pub async fn retire(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let now = time_util::now_ms();
    if form.get("confirm") != "1" {
        let secrets = state.store.key_secrets(user.workspace(), key.id).await?;
        if let Some(previous) = secrets
            .iter()
            .find(|s| !s.is_current() && s.is_live(now))
            .filter(|s| super::used_within_hour(s.last_used_at, now))
        {
            return super::ConfirmPage {
                title: format!("Retire the previous secret of “{}”?", key.name),
                message: format!(
                    "The previous secret {} served a request {}: whatever still sends it fails \
                     from the moment it retires. Deploy the current secret there first.",
                    previous.masked(),
                    time_util::relative(now, previous.last_used_at.unwrap_or(now))
                ),
                action: format!("/keys/{}/retire", key.id),
                button: "Retire it now",
                cancel: format!("/keys/{}", key.id),
                layout: user.layout("keys"),
            }
            .respond();
        }
    }
    let done = state
        .store
        .retire_previous(user.workspace(), key.id, &user.actor)
        .await;
    if done.is_ok() {
        tracing::info!(account_id = %user.workspace(), key_id = %key.id, "previous secret retired");
    }
    back_to_key(
        &user,
        key.id,
        done,
        "The previous secret is retired: requests with it now fail.",
        "There is no previous secret to retire.",
    )
}

/// Extend: once per rendered form (its one-time `form_id`), so a double click or a resent
/// POST does not push the deadline twice.
pub async fn extend(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let back = format!("/keys/{}", key.id);
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, &back),
    };
    let done = state
        .store
        .extend_previous(
            user.workspace(),
            key.id,
            EXTEND_MS,
            MAX_EXTENDS,
            &user.actor,
        )
        .await;
    let message = match done {
        Ok(()) => "The previous secret's deadline is 24 hours later.".to_owned(),
        Err(StoreError::NotFound) => "There is no previous secret to extend.".to_owned(),
        Err(StoreError::Conflict) => format!(
            "The previous secret was extended {MAX_EXTENDS} times already, the most allowed. \
             Move what still uses it to the new secret, then retire it."
        ),
        Err(e) => return Err(e.into()),
    };
    user.session.set_flash(&message)?;
    user.session.form_done(ticket, &back, message)?;
    Ok(see_other(&back))
}

/// Back to the key's page, with a flash saying what an action on its previous secret did
/// (`NotFound`: there was no pending previous secret).
fn back_to_key(
    user: &Dashboard,
    key: KeyId,
    done: crate::store::Result<()>,
    ok: &str,
    none: &str,
) -> WebResult<HttpResponse> {
    let message = match done {
        Ok(()) => ok,
        Err(StoreError::NotFound) => none,
        Err(e) => return Err(e.into()),
    };
    user.session.set_flash(message)?;
    Ok(see_other(&format!("/keys/{key}")))
}
