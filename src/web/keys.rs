//! Keys pages: list, New key (with the one-time reveal), edit, disable/enable, delete.
//! How a key is shown: `web::key_view`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::WebResult;
use super::form::CsrfForm;
pub use super::key_view::KeyView;
use super::live_key::LiveKey;
use super::session::FormUse;
use super::{already_done, see_other, Dashboard, Layout};
use crate::catalogue::Catalogue;
use crate::domain::key_form::{FieldErrors, KeyFormInput};
use crate::domain::{time_util, ApiToken, KeyId};
use crate::service::keys::{self, KeyError};
use crate::state::AppState;
use crate::store::keys::{KeyRow, KeyStatus, KeySwitch};

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    layout: Layout,
    active: Vec<KeyView>,
    revoked: Vec<KeyView>,
}

pub async fn list(state: web::Data<AppState>, user: Dashboard) -> WebResult<HttpResponse> {
    let now = time_util::now_ms();
    let keys = state.store.list_keys(user.workspace()).await?;
    let secrets = state.store.account_secrets(user.workspace()).await?;
    let (revoked, active): (Vec<_>, Vec<_>) =
        keys.iter().partition(|k| k.status == KeyStatus::Revoked);
    let activity = state.store.key_activity(user.workspace(), None).await?;
    let views = active
        .into_iter()
        .map(|k| {
            KeyView::new(k, now)
                .with_secrets(k, &secrets, &state.settings, now)
                .with_activity(activity.get(&k.id), now)
        })
        .collect();
    let page = KeysPage {
        layout: user.layout("keys"),
        active: views,
        revoked: revoked.into_iter().map(|k| KeyView::new(k, now)).collect(),
    };
    html(StatusCode::OK, page.render()?)
}

pub struct ModelOption {
    pub id: String,
    pub name: String,
    pub prices: String,
    /// `eu-west, us-east`: where it has providers this gateway can call.
    pub regions: String,
    pub checked: bool,
    /// Some provider of it is configured here: else requests for it fail (503
    /// `model_unavailable`), and the picker says so.
    pub serves: bool,
}

pub struct RegionOption {
    pub id: String,
    /// `eu-west · every model` or `us-west · not openai/gpt-4o`: pinning a key there makes
    /// those models fail (503 `region_unavailable`), so the choice says so before Create.
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "key_form.html")]
struct KeyFormPage {
    layout: Layout,
    /// `Some(id)` when editing an existing key.
    editing: Option<KeyId>,
    /// The key being edited: its token, state, last use and spend beside the fields.
    key: Option<KeyView>,
    summary: Vec<super::error_summary::ErrorLink>,
    input: KeyFormInput,
    errors: FieldErrors,
    models: Vec<ModelOption>,
    regions: Vec<RegionOption>,
    today: String,
    /// The account must verify its email first: the form says so and cannot be sent.
    unverified: bool,
}

/// Whether some provider of `m` is configured on this gateway (else its requests fail with
/// 503 `model_unavailable`): the picker marks it, the reveal warns.
fn served_here(state: &AppState, m: &crate::catalogue::Model) -> bool {
    state
        .catalogue
        .serves(m, None, |p| state.upstreams.is_usable(p))
}

fn form_page(
    state: &AppState,
    layout: Layout,
    editing: Option<(KeyId, KeyView)>,
    input: KeyFormInput,
    errors: FieldErrors,
) -> KeyFormPage {
    let catalogue: &Catalogue = &state.catalogue;
    let usable = |p: &crate::catalogue::Provider| state.upstreams.is_usable(p);
    let models = catalogue
        .models
        .iter()
        .map(|m| ModelOption {
            serves: served_here(state, m),
            id: m.id.clone(),
            name: m.name.clone(),
            prices: format!(
                "{} / {} credits per 1M tokens in / out",
                m.input_price.display(),
                m.output_price.display()
            ),
            regions: catalogue.model_regions(m, usable).join(", "),
            checked: input.models.iter().any(|x| x == &m.id),
        })
        .collect();
    let regions = catalogue
        .regions
        .iter()
        .map(|r| {
            let missing: Vec<&str> = catalogue
                .models
                .iter()
                .filter(|m| catalogue.routes_in(m, Some(r)).next().is_none())
                .map(|m| m.id.as_str())
                .collect();
            let label = if missing.is_empty() {
                format!("{r} · every model")
            } else {
                format!("{r} · not {}", missing.join(", "))
            };
            RegionOption {
                id: r.clone(),
                label,
                selected: input.region == *r,
            }
        })
        .collect();
    KeyFormPage {
        unverified: layout.unverified && editing.is_none(),
        layout,
        editing: editing.as_ref().map(|(id, _)| *id),
        key: editing.map(|(_, k)| k),
        summary: super::error_summary::key_form(&errors),
        input,
        errors,
        models,
        regions,
        today: time_util::format_date(time_util::now_ms()),
    }
}

fn read_form(form: &CsrfForm) -> KeyFormInput {
    KeyFormInput {
        name: form.get("name").to_owned(),
        models: form.get_all("models"),
        region: form.get("region").to_owned(),
        daily_limit: form.get("daily_limit").to_owned(),
        monthly_limit: form.get("monthly_limit").to_owned(),
        expires: form.get("expires").to_owned(),
        rpm_limit: form.get("rpm_limit").to_owned(),
        concurrency_limit: form.get("concurrency_limit").to_owned(),
        disable_after_days: form.get("disable_after_days").to_owned(),
    }
}

/// An account that must still verify its email gets the form refused (403), saying why.
fn refused_unverified(
    state: &AppState,
    user: &Dashboard,
    input: KeyFormInput,
) -> WebResult<HttpResponse> {
    let layout = user.layout("keys");
    let page = form_page(state, layout, None, input, FieldErrors::default());
    html(StatusCode::FORBIDDEN, page.render()?)
}

pub async fn new_form(state: web::Data<AppState>, user: Dashboard) -> WebResult<HttpResponse> {
    if user.unverified {
        return refused_unverified(&state, &user, KeyFormInput::default());
    }
    let page = form_page(
        &state,
        user.layout("keys"),
        None,
        KeyFormInput::default(),
        FieldErrors::default(),
    );
    html(StatusCode::OK, page.render()?)
}

#[derive(Template)]
#[template(path = "key_created.html")]
struct RevealPage {
    layout: Layout,
    name: String,
    /// The key's scoping, for the user to check what they just made.
    key: KeyView,
    token: String,
    /// The export line and curl / Python / Node calls.
    snippets: Vec<super::snippets::Snippet>,
    /// A new secret of an existing key (Roll), not a new key.
    rolled: bool,
    /// Models the key allows that no configured provider serves: said at once, not by the
    /// first request's 503.
    unserved: Vec<String>,
}

/// The one-time reveal of `token` (Create and Roll): the POST's own answer, `no-store`.
pub(super) fn reveal(
    state: &AppState,
    user: &Dashboard,
    req: &actix_web::HttpRequest,
    key: &KeyRow,
    token: &ApiToken,
    rolled: bool,
) -> WebResult<HttpResponse> {
    let page = RevealPage {
        layout: user.layout("keys"),
        name: key.name.clone(),
        key: KeyView::new(key, time_util::now_ms()),
        token: token.expose().to_owned(),
        snippets: super::snippets::snippets(&base_url(state, req), token.expose()),
        rolled,
        unserved: key
            .models
            .iter()
            .filter(|id| {
                state
                    .catalogue
                    .model(id)
                    .is_some_and(|m| !served_here(state, m))
            })
            .map(str::to_owned)
            .collect(),
    };
    Ok(secret_reveal(page.render()?))
}

/// The dashboard's address for snippets and links: `public_base_url`, else what this
/// request says through the trusted chain (never a forwarding header from anyone else).
pub(super) fn base_url(state: &AppState, req: &actix_web::HttpRequest) -> String {
    match &state.settings.public_base_url {
        Some(url) => url.clone(),
        None => state.proxies.origin(req),
    }
}

/// A page that shows a secret once, as the answer to the POST that made it: `no-store`
/// (and `Pragma: no-cache` for old caches), so no cache and no Back button brings it back.
pub(super) fn secret_reveal(html: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .body(html)
}

/// Create answers with the reveal page itself (no redirect, so the token is in no URL and
/// no session), marked `no-store`. A re-submitted form (reload, Back then Forward) carries a
/// used form id and is sent to the Keys page instead, with "Already done": no second key, no
/// second reveal.
pub async fn create(
    state: web::Data<AppState>,
    user: Dashboard,
    req: actix_web::HttpRequest,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let input = read_form(&form);
    // Verified people only (`service::email_gate`): the form says why, with what was typed.
    let Ok(cleared) = user.cleared() else {
        return refused_unverified(&state, &user, input);
    };
    let spec = match keys::spec_for_create(&state.catalogue, &input, keys::today()) {
        Ok(spec) => spec,
        Err(e) => return render_key_error(&state, &user, None, input, e),
    };
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, "/keys"),
    };
    let token = ApiToken::generate();
    match keys::create(
        &state.store,
        user.workspace(),
        &spec,
        &token,
        &user.actor,
        cleared,
    )
    .await
    {
        Ok(id) => {
            tracing::info!(account_id = %user.workspace(), key_id = %id, "key created");
            let key = state.store.key(user.workspace(), id).await?;
            user.session.form_done(
                ticket,
                "/keys",
                format!(
                    "the key “{}” was created. Its token, {}, was shown only once: if it \
                     was not copied, Roll the key for a new one.",
                    key.name,
                    token.masked()
                ),
            )?;
            reveal(&state, &user, &req, &key, &token, false)
        }
        Err(e) => {
            drop(ticket);
            render_key_error(&state, &user, None, input, e)
        }
    }
}

/// A keys-service refusal on the dashboard: the form again with its field errors (422), or
/// the error page.
fn render_key_error(
    state: &AppState,
    user: &Dashboard,
    editing: Option<&KeyRow>,
    input: KeyFormInput,
    e: KeyError,
) -> WebResult<HttpResponse> {
    match e {
        KeyError::NotFound => Err(super::error::WebError::NotFound),
        KeyError::Store(e) => Err(e.into()),
        e => render_form_errors(
            state,
            user,
            editing,
            input,
            e.field_errors().unwrap_or_default(),
        ),
    }
}

fn render_form_errors(
    state: &AppState,
    user: &Dashboard,
    editing: Option<&KeyRow>,
    input: KeyFormInput,
    errors: FieldErrors,
) -> WebResult<HttpResponse> {
    let editing = editing.map(|k| (k.id, KeyView::new(k, time_util::now_ms())));
    let page = form_page(state, user.layout("keys"), editing, input, errors);
    html(StatusCode::UNPROCESSABLE_ENTITY, page.render()?)
}

pub async fn edit_form(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
) -> WebResult<HttpResponse> {
    let input = KeyFormInput::from_spec(&key.spec());
    let page = form_page(
        &state,
        user.layout("keys"),
        Some((key.id, KeyView::new(&key, time_util::now_ms()))),
        input,
        FieldErrors::default(),
    );
    html(StatusCode::OK, page.render()?)
}

pub async fn update(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let input = read_form(&form);
    let updated = match keys::spec_for_edit(&state.catalogue, &key, &input, keys::today()) {
        Ok(spec) => keys::update(
            &state.store,
            user.workspace(),
            key.id,
            &spec,
            None,
            &user.actor,
        )
        .await
        .map(|()| spec),
        Err(e) => Err(e),
    };
    match updated {
        Ok(spec) => {
            user.session
                .set_flash(&format!("Saved changes to “{}”.", spec.name))?;
            Ok(see_other("/keys"))
        }
        Err(e) => render_key_error(&state, &user, Some(&key), input, e),
    }
}

async fn set_status(
    state: &AppState,
    user: &Dashboard,
    key: &KeyRow,
    switch: KeySwitch,
) -> WebResult<HttpResponse> {
    state
        .store
        .set_key_status(user.workspace(), key.id, switch, &user.actor)
        .await?;
    let verb = match switch {
        KeySwitch::Enabled => "enabled",
        KeySwitch::Disabled => "disabled",
    };
    user.session
        .set_flash(&format!("“{}” is {verb}.", key.name))?;
    if switch == KeySwitch::Disabled {
        user.session
            .set_undo(&format!("/keys/{}/enable", key.id), "Undo: enable it")?;
    }
    Ok(see_other("/keys"))
}

/// Disables at once, unless the key served a request in the last hour: then a page asks
/// first (its button sends `confirm=1`), since every client using it fails from then on.
/// The flash that reports it offers Undo (Enable).
pub async fn disable(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let now = time_util::now_ms();
    if form.get("confirm") != "1" && super::used_within_hour(key.last_used_at, now) {
        return super::ConfirmPage {
            title: format!("Disable “{}”?", key.name),
            message: format!(
                "It served a request {}. Every request with it fails from the moment it is \
                 disabled, until it is enabled again.",
                time_util::relative(now, key.last_used_at.unwrap_or(now))
            ),
            action: format!("/keys/{}/disable", key.id),
            button: "Disable key",
            cancel: "/keys".into(),
            layout: user.layout("keys"),
        }
        .respond();
    }
    set_status(&state, &user, &key, KeySwitch::Disabled).await
}

pub async fn enable(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
    _f: CsrfForm,
) -> WebResult<HttpResponse> {
    set_status(&state, &user, &key, KeySwitch::Enabled).await
}

#[derive(Template)]
#[template(path = "key_delete.html")]
struct DeletePage {
    layout: Layout,
    key: KeyView,
}

pub async fn confirm_delete(LiveKey { user, key }: LiveKey) -> WebResult<HttpResponse> {
    let page = DeletePage {
        key: KeyView::new(&key, time_util::now_ms()),
        layout: user.layout("keys"),
    };
    html(StatusCode::OK, page.render()?)
}

pub async fn delete(
    state: web::Data<AppState>,
    LiveKey { user, key }: LiveKey,
    _f: CsrfForm,
) -> WebResult<HttpResponse> {
    state
        .store
        .revoke_key(user.workspace(), key.id, &user.actor)
        .await?;
    tracing::info!(account_id = %user.workspace(), key_id = %key.id, "key revoked");
    user.session.set_flash(&format!(
        "Deleted “{}”. Requests with its token now fail.",
        key.name
    ))?;
    Ok(see_other("/keys"))
}

pub fn html(status: StatusCode, body: String) -> WebResult<HttpResponse> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body))
}
