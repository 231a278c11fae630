//! Webhook endpoints on the alert settings page: add (its signing secret shown once), Roll
//! secret, send a test event, delete. The URL rules and the checking resolver are
//! `alerts::target`; delivery is `alerts::outbox`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::alerts::{settings_input, settings_page, Errors};
use super::error::{WebError, WebResult};
use super::form::CsrfForm;
use super::session::FormUse;
use super::{already_done, see_other, Dashboard};
use crate::alerts::{event, sign, target};
use crate::state::AppState;
use crate::store::webhooks::TestQueued;

/// Most endpoints one workspace may have.
const MAX_ENDPOINTS: usize = 10;
/// Most test events that may wait (not yet delivered or given up) for one endpoint: a
/// receiver that is down keeps them for its 24 hours, and each is an attempt to make.
/// With [`MAX_ENDPOINTS`], at most 30 per workspace.
const TEST_BUDGET: i64 = 3;

pub async fn create_endpoint(
    state: web::Data<AppState>,
    user: Dashboard,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let s = state.store.alert_settings(user.workspace()).await?;
    let mut input = settings_input(&s);
    input.url = form.get("url").chars().take(target::MAX_URL + 1).collect();
    input.events = form.get_all("events");
    let mut errors = Errors::default();
    let allow = state.settings.webhook_allow_private_targets;
    let url = match target::parse(&input.url, allow) {
        Ok(u) => match target::check_resolved(&u, allow).await {
            Ok(()) => Some(u),
            Err(e) => {
                errors.url = Some(e.to_string());
                None
            }
        },
        Err(e) => {
            errors.url = Some(e.to_string());
            None
        }
    };
    if input.events.is_empty() || !input.events.iter().all(|k| event::is_kind(k)) {
        errors.events = Some("Choose at least one event.".into());
    }
    if state.store.endpoints(user.workspace()).await?.len() >= MAX_ENDPOINTS {
        errors.url = Some(format!(
            "A workspace has at most {MAX_ENDPOINTS} endpoints; delete one first."
        ));
    }
    let Some(url) = url.filter(|_| errors.url.is_none() && errors.events.is_none()) else {
        return settings_page(
            &state,
            &user,
            input,
            errors,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, "/alerts/settings"),
    };
    let secret = sign::new_secret();
    let id = state
        .store
        .create_endpoint(
            user.workspace(),
            url.as_str(),
            &secret,
            &input.events.join(","),
            &user.actor,
        )
        .await?;
    tracing::info!(
        account_id = %user.workspace(),
        endpoint = id,
        "webhook endpoint added"
    );
    user.session.form_done(
        ticket,
        "/alerts/settings",
        format!(
            "the endpoint {} was added. Its signing secret was shown only once: if it was not \
             copied, delete the endpoint and add it again.",
            url.as_str()
        ),
    )?;
    reveal_secret(&state, &user, secret).await
}

/// A live endpoint of this workspace (another workspace's, or a deleted one, is a 404
/// before anything else, whatever the form says).
async fn own_endpoint(state: &AppState, user: &Dashboard, id: i64) -> WebResult<i64> {
    let endpoints = state.store.endpoints(user.workspace()).await?;
    endpoints
        .iter()
        .any(|e| e.id == id)
        .then_some(id)
        .ok_or(WebError::NotFound)
}

/// The settings page showing an endpoint's new signing secret once (`no-store`).
async fn reveal_secret(
    state: &AppState,
    user: &Dashboard,
    secret: String,
) -> WebResult<HttpResponse> {
    let s = state.store.alert_settings(user.workspace()).await?;
    settings_page(
        state,
        user,
        settings_input(&s),
        Errors::default(),
        Some(secret),
        StatusCode::OK,
    )
    .await
}

/// Gives an endpoint a new signing secret, shown once like a new endpoint's (`no-store`);
/// the old one signs nothing from now on. A re-sent form rolls nothing again.
pub async fn roll_endpoint(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<i64>,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let endpoint = own_endpoint(&state, &user, path.into_inner()).await?;
    let ticket = match form.claim(&user.session)? {
        FormUse::First(t) => t,
        FormUse::Repeat(done) => return already_done(&user, done, "/alerts/settings"),
    };
    let secret = sign::new_secret();
    let url = state
        .store
        .roll_endpoint_secret(user.workspace(), endpoint, &secret, &user.actor)
        .await?;
    tracing::info!(account_id = %user.workspace(), endpoint, "webhook secret rolled");
    user.session.form_done(
        ticket,
        "/alerts/settings",
        format!(
            "the signing secret of {url} was rolled. The new one was shown only once: lost it? \
             Roll again."
        ),
    )?;
    reveal_secret(&state, &user, secret).await
}

pub async fn delete_endpoint(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<i64>,
    _f: CsrfForm,
) -> WebResult<HttpResponse> {
    state
        .store
        .delete_endpoint(user.workspace(), path.into_inner(), &user.actor)
        .await?;
    user.session
        .set_flash("Endpoint deleted. Its pending deliveries were dropped.")?;
    Ok(see_other("/alerts/settings"))
}

/// "Send test event": a `test` event for this endpoint only, unless [`TEST_BUDGET`] of them
/// already wait for it (then a form error, and nothing is queued).
pub async fn send_test(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<i64>,
    _f: CsrfForm,
) -> WebResult<HttpResponse> {
    let endpoint = own_endpoint(&state, &user, path.into_inner()).await?;
    match event::send_test(&state.store, user.workspace(), endpoint, TEST_BUDGET).await? {
        TestQueued::Queued => {
            state.outbox.notify_one();
            user.session
                .set_flash("Test event queued; see the delivery log below.")?;
            Ok(see_other("/alerts/settings"))
        }
        TestQueued::OverBudget => {
            let s = state.store.alert_settings(user.workspace()).await?;
            let errors = Errors {
                test: Some(format!(
                    "Endpoint {endpoint} already has {TEST_BUDGET} test events waiting to be \
                     delivered: see the delivery log. Send another once one is delivered or \
                     given up. Nothing was queued."
                )),
                ..Errors::default()
            };
            settings_page(
                &state,
                &user,
                settings_input(&s),
                errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}
