//! The Alerts pages: the notifications list (with Mark all read) and the settings page:
//! webhook endpoints (their actions are `web::webhooks`), their delivery log, the
//! workspace's spike and balance settings and email digest, and each key's auto-disable on
//! spike.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::WebResult;
use super::form::CsrfForm;
use super::keys::html;
use super::{see_other, Dashboard, Layout};
use crate::alerts::event;
use crate::domain::{time_util, Credits, KeyId};
use crate::state::AppState;
use crate::store::alerts::AlertSettings;

pub struct EventView {
    pub when: String,
    pub kind: String,
    pub summary: String,
    /// Amounts, the secret, where: `alerts::event::facts`.
    pub facts: Vec<String>,
    /// The key's page, when the event is about a live key.
    pub key_page: Option<String>,
    pub id: String,
    pub unread: bool,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    layout: Layout,
    events: Vec<EventView>,
}

pub async fn list(state: web::Data<AppState>, user: Dashboard) -> WebResult<HttpResponse> {
    let (events, keys) = futures_util::future::try_join(
        state.store.alert_events(user.workspace(), 100),
        state.store.list_keys(user.workspace()),
    )
    .await?;
    // Events name keys by public id; the key's page is by row id (live keys only).
    let page_of = |public: Option<String>| {
        let public = public?;
        keys.iter()
            .find(|k| k.revoked_at.is_none() && k.public_id.as_deref() == Some(public.as_str()))
            .map(|k| format!("/keys/{}", k.id))
    };
    let page = AlertsPage {
        layout: user.layout("alerts"),
        events: events
            .iter()
            .map(|e| EventView {
                when: time_util::format_minute(e.created_at),
                kind: e.kind.clone(),
                summary: event::summary(&e.kind, &e.payload),
                facts: event::facts(&e.kind, &e.payload),
                key_page: page_of(event::key_public_id(&e.payload)),
                id: e.public_id.clone(),
                unread: e.read_at.is_none(),
            })
            .collect(),
    };
    html(StatusCode::OK, page.render()?)
}

pub async fn mark_read(
    state: web::Data<AppState>,
    user: Dashboard,
    _f: CsrfForm,
) -> WebResult<HttpResponse> {
    state.store.mark_alerts_read(user.workspace()).await?;
    Ok(see_other("/alerts"))
}

pub struct EndpointView {
    pub id: i64,
    pub url: String,
    pub events: String,
    /// "OK", failures in a row, or the circuit breaker's pause.
    pub health: String,
}

/// An endpoint's health as its row shows it.
fn health(failures: i64, paused_until: Option<i64>, now: i64) -> String {
    match (failures, paused_until) {
        (_, Some(until)) if until > now => format!(
            "Paused after {failures} failures in a row; next try {} UTC",
            time_util::format_second(until)
        ),
        (0, _) => "OK".into(),
        (1, _) => "1 failure".into(),
        (n, _) => format!("{n} failures in a row"),
    }
}

pub struct DeliveryView {
    pub endpoint_id: i64,
    pub event: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub last: String,
    pub status: String,
    pub latency: String,
    pub next: String,
}

pub struct KeyToggle {
    pub id: KeyId,
    pub name: String,
    pub on: bool,
}

/// What was typed into the forms, kept when one is refused.
#[derive(Default)]
pub struct Input {
    pub url: String,
    pub events: Vec<String>,
    pub spike_floor: String,
    pub spike_factor: String,
    pub balance_below: String,
    pub email_digest: bool,
}

impl Input {
    pub fn has(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }
}

#[derive(Default)]
pub struct Errors {
    pub url: Option<String>,
    pub events: Option<String>,
    pub settings: Option<String>,
    /// "Send test event" refused (its budget).
    pub test: Option<String>,
}

#[derive(Template)]
#[template(path = "alert_settings.html")]
struct SettingsPage {
    layout: Layout,
    endpoints: Vec<EndpointView>,
    deliveries: Vec<DeliveryView>,
    keys: Vec<KeyToggle>,
    kinds: Vec<(&'static str, &'static str)>,
    input: Input,
    errors: Errors,
    /// The new endpoint's signing secret, shown once.
    secret: Option<String>,
    mail: bool,
}

pub(super) fn settings_input(s: &AlertSettings) -> Input {
    Input {
        events: event::KINDS
            .iter()
            .filter(|(k, _)| *k != "test")
            .map(|(k, _)| (*k).to_owned())
            .collect(),
        spike_floor: Credits::from_micros(s.spike_floor).to_string(),
        spike_factor: s.spike_factor.to_string(),
        balance_below: s
            .balance_below
            .map(|b| Credits::from_micros(b).to_string())
            .unwrap_or_default(),
        email_digest: s.email_digest,
        ..Input::default()
    }
}

pub(super) async fn settings_page(
    state: &AppState,
    user: &Dashboard,
    input: Input,
    errors: Errors,
    secret: Option<String>,
    status: StatusCode,
) -> WebResult<HttpResponse> {
    let id = user.workspace();
    let endpoints = state.store.endpoints(id).await?;
    let deliveries = state.store.deliveries(id, 50).await?;
    let auto = state.store.auto_disable_keys(id).await?;
    let keys = state.store.list_keys(id).await?;
    let now = time_util::now_ms();
    let page = SettingsPage {
        layout: user.layout("alerts"),
        endpoints: endpoints
            .into_iter()
            .map(|e| EndpointView {
                health: health(e.failures, e.paused_until, now),
                id: e.id,
                url: e.url,
                events: e.events.replace(',', ", "),
            })
            .collect(),
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView {
                endpoint_id: d.endpoint_id,
                event: d.event_public_id,
                kind: d.kind,
                last: d
                    .last_attempt_at
                    .map_or_else(|| "Not yet".into(), time_util::format_second),
                status: match (d.last_status, d.last_error) {
                    (Some(s), _) => s.to_string(),
                    (None, Some(e)) => e,
                    (None, None) => "–".into(),
                },
                latency: d
                    .last_latency_ms
                    .map_or_else(|| "–".into(), |l| format!("{l} ms")),
                next: if d.state == "pending" && d.next_attempt_at > now {
                    time_util::format_second(d.next_attempt_at)
                } else {
                    "–".into()
                },
                state: d.state,
                attempts: d.attempts,
            })
            .collect(),
        keys: keys
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .map(|k| KeyToggle {
                on: auto.contains(&k.id),
                id: k.id,
                name: k.name,
            })
            .collect(),
        kinds: event::KINDS.to_vec(),
        input,
        errors,
        mail: state.mailer.is_some(),
        secret: secret.clone(),
    };
    let body = page.render()?;
    Ok(match secret {
        Some(_) => super::keys::secret_reveal(body),
        None => html(status, body)?,
    })
}

pub async fn settings(state: web::Data<AppState>, user: Dashboard) -> WebResult<HttpResponse> {
    let s = state.store.alert_settings(user.workspace()).await?;
    settings_page(
        &state,
        &user,
        settings_input(&s),
        Errors::default(),
        None,
        StatusCode::OK,
    )
    .await
}

/// Credits as typed (`1.5`), or the error to show.
fn credits(s: &str, what: &str) -> Result<i64, String> {
    s.trim()
        .parse::<Credits>()
        .map(|c| c.micros())
        .map_err(|_| format!("{what}: enter an amount of credits, like 5 or 0.25."))
}

pub async fn save_settings(
    state: web::Data<AppState>,
    user: Dashboard,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let input = Input {
        spike_floor: form.get("spike_floor").chars().take(40).collect(),
        spike_factor: form.get("spike_factor").chars().take(40).collect(),
        balance_below: form.get("balance_below").chars().take(40).collect(),
        // No digest can be sent without mail: the box is disabled on such a server, and a
        // crafted form cannot turn it on either.
        email_digest: state.mailer.is_some() && !form.get("email_digest").is_empty(),
        ..settings_input(&AlertSettings::default())
    };
    let parsed = (|| -> Result<AlertSettings, String> {
        let factor = input
            .spike_factor
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|f| (1..=1000).contains(f));
        Ok(AlertSettings {
            spike_floor: credits(&input.spike_floor, "Spike floor")?,
            spike_factor: factor.ok_or("Spike factor: enter a whole number from 1 to 1000.")?,
            balance_below: match input.balance_below.trim() {
                "" => None,
                s => Some(credits(s, "Balance alert")?),
            },
            email_digest: input.email_digest,
        })
    })();
    match parsed {
        Ok(s) => {
            state
                .store
                .save_alert_settings(user.workspace(), &s, &user.actor)
                .await?;
            user.session.set_flash("Alert settings saved.")?;
            Ok(see_other("/alerts/settings"))
        }
        Err(e) => {
            let errors = Errors {
                settings: Some(e),
                ..Errors::default()
            };
            settings_page(
                &state,
                &user,
                input,
                errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

pub async fn auto_disable(
    state: web::Data<AppState>,
    user: Dashboard,
    path: web::Path<KeyId>,
    form: CsrfForm,
) -> WebResult<HttpResponse> {
    let on = form.get("on") == "1";
    state
        .store
        .set_key_auto_disable(user.workspace(), path.into_inner(), on, &user.actor)
        .await?;
    user.session.set_flash(if on {
        "Auto-disable on spike is on for that key."
    } else {
        "Auto-disable on spike is off for that key."
    })?;
    Ok(see_other("/alerts/settings"))
}
