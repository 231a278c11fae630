//! The management API's JSON: request bodies (parsed into the key form's raw input, so the
//! dashboard's validator decides: one set of rules) and the key object. These types are
//! also the OpenAPI document's schemas (`gateway::openapi`), so the two cannot drift.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::domain::key_form::{FieldErrors, KeyFormInput};
use crate::domain::{time_util, Credits, KeyId};
use crate::gateway::error::ApiError;
use crate::store::key_secrets::SecretRow;
use crate::store::keys::{KeyRow, KeyState};
use crate::store::usage::KeyActivity;

/// A credit amount: a decimal string (`"2.50"`, exact) or a JSON number.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Amount {
    Text(String),
    #[schema(value_type = f64)]
    Number(serde_json::Number),
}

impl Amount {
    fn raw(&self) -> String {
        match self {
            Amount::Text(s) => s.clone(),
            Amount::Number(n) => n.to_string(),
        }
    }
}

/// `POST /api/v1/keys`. Absent or null optional fields: no scoping, no limit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Unique among the account's live keys (names that look the same count as the same).
    pub name: String,
    /// Model ids from `GET /api/v1/models`; empty or absent: every model.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// A region id; absent: any region.
    #[serde(default)]
    pub region: Option<String>,
    /// Credits per UTC day.
    #[serde(default)]
    pub daily_limit: Option<Amount>,
    /// Credits per UTC calendar month.
    #[serde(default)]
    pub monthly_limit: Option<Amount>,
    /// `YYYY-MM-DD` (the last day the key works) or the RFC 3339 instant it stops, a UTC
    /// midnight (`2027-01-01T00:00:00Z`), as the key object reports it.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Requests per minute.
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    /// Requests in flight at once.
    #[serde(default)]
    pub concurrency_limit: Option<u64>,
    /// The key disables itself after this many days without a request (1 to 3650).
    #[serde(default)]
    pub disable_after_days: Option<u64>,
}

/// `Some(None)` for an explicit `null` (clear the field), `None` when absent (keep it).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH /api/v1/keys/{id}`: only the fields sent change; `null` clears an optional one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchKey {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub region: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Amount>)]
    pub daily_limit: Option<Option<Amount>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Amount>)]
    pub monthly_limit: Option<Option<Amount>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub rpm_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub concurrency_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub disable_after_days: Option<Option<u64>>,
    /// `true` disables the key (kept, refuses requests), `false` enables it again.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// Parses a JSON body into `T`, naming the field at fault (`param`) when it cannot.
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = format!("The request body is not valid: {inner}.");
        // An unknown or missing field is named by the message, not the path (which stops
        // before it).
        let unknown = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|marker| {
                message
                    .split_once(marker)
                    .and_then(|(_, rest)| rest.split_once('`'))
                    .map(|(field, _)| crate::domain::text::client_label(field))
            });
        match (unknown, path.as_str()) {
            (Some(field), _) => ApiError::invalid_param(field, message),
            (None, "." | "") => ApiError::invalid_request(message),
            (None, p) => {
                ApiError::invalid_param(p.split(['.', '[']).next().unwrap_or(p).to_owned(), message)
            }
        }
    })
}

fn opt_raw<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

impl CreateKey {
    /// The form's raw input, for the form's validator.
    pub fn input(&self) -> KeyFormInput {
        KeyFormInput {
            name: self.name.clone(),
            models: self.models.clone().unwrap_or_default(),
            region: self.region.clone().unwrap_or_default(),
            daily_limit: self
                .daily_limit
                .as_ref()
                .map(Amount::raw)
                .unwrap_or_default(),
            monthly_limit: self
                .monthly_limit
                .as_ref()
                .map(Amount::raw)
                .unwrap_or_default(),
            expires: self.expires_at.clone().unwrap_or_default(),
            rpm_limit: opt_raw(self.rpm_limit),
            concurrency_limit: opt_raw(self.concurrency_limit),
            disable_after_days: opt_raw(self.disable_after_days),
        }
    }
}

impl PatchKey {
    /// The key's current form input with the sent fields laid over it.
    pub fn apply(&self, mut input: KeyFormInput) -> KeyFormInput {
        if let Some(n) = &self.name {
            input.name = n.clone();
        }
        if let Some(m) = &self.models {
            input.models = m.clone().unwrap_or_default();
        }
        if let Some(r) = &self.region {
            input.region = r.clone().unwrap_or_default();
        }
        if let Some(l) = &self.daily_limit {
            input.daily_limit = l.as_ref().map(Amount::raw).unwrap_or_default();
        }
        if let Some(l) = &self.monthly_limit {
            input.monthly_limit = l.as_ref().map(Amount::raw).unwrap_or_default();
        }
        if let Some(e) = &self.expires_at {
            input.expires = e.clone().unwrap_or_default();
        }
        if let Some(n) = self.rpm_limit {
            input.rpm_limit = opt_raw(n);
        }
        if let Some(n) = self.concurrency_limit {
            input.concurrency_limit = opt_raw(n);
        }
        if let Some(n) = self.disable_after_days {
            input.disable_after_days = opt_raw(n);
        }
        input
    }
}

/// The form validator's first complaint, as a 400 naming the field.
pub fn field_error(errors: &FieldErrors) -> ApiError {
    match errors.first() {
        Some((field, message)) => ApiError::invalid_param(field, message),
        None => ApiError::invalid_request("The request is not valid."),
    }
}

/// A key as the management API shows it: never more of the token than prefix and last four.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyObject {
    /// `key_…`: stable and opaque.
    pub id: String,
    pub name: String,
    /// `lr-sk-Ab3d…x9Qz`.
    pub display: String,
    /// `active`, `disabled`, `expired` or `revoked`.
    pub status: &'static str,
    /// Empty: every model.
    pub models: Vec<String>,
    pub region: Option<String>,
    /// Credits, a decimal string.
    pub daily_limit: Option<String>,
    pub monthly_limit: Option<String>,
    pub rpm_limit: Option<i64>,
    pub concurrency_limit: Option<i64>,
    /// Days without a request after which the key disables itself (status `disabled`
    /// until enabled again); null: never.
    pub disable_after_days: Option<i64>,
    /// RFC 3339: the instant the key stops working.
    pub expires_at: Option<String>,
    pub created_at: String,
    /// The last request the key served (RFC 3339); refusals are in `last_refusal`.
    pub last_used_at: Option<String>,
    /// The last request the key refused or that failed, if any.
    pub last_refusal: Option<LastRefusal>,
    /// Settled spend today (UTC) and this month, decimal strings.
    pub spend_today: String,
    pub spend_this_month: String,
    /// The previous secret while a rotation is pending (it still works until it retires);
    /// null otherwise.
    pub previous_secret: Option<PreviousSecret>,
}

/// A key's last refused or failed request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastRefusal {
    /// RFC 3339.
    pub at: String,
    /// The HTTP status the client got.
    pub status: i64,
    /// The error code of the usage row (`daily_limit_reached`, `key_disabled`, …).
    pub code: Option<String>,
    /// Its usage record: `GET /api/v1/generation?id=…`.
    pub generation_id: String,
}

/// A rolled-out secret that still works until it retires.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PreviousSecret {
    /// `lr-sk-Ab3d…x9Qz`.
    pub display: String,
    pub last_used_at: Option<String>,
    /// When it retires as things stand (RFC 3339): the chosen time, or for a "when quiet"
    /// retirement the earlier of its deadline and the end of the current quiet period (a
    /// request before then pushes the latter back).
    pub retires_at: Option<String>,
    /// It retires once its traffic stops (else at a time).
    pub retire_when_quiet: bool,
    /// With `retire_when_quiet`: the quiet period, in minutes.
    pub quiet_minutes: Option<f64>,
}

impl PreviousSecret {
    /// The pending previous secret among a key's secrets, if any.
    pub fn of(key_id: KeyId, secrets: &[SecretRow], now_ms: i64) -> Option<Self> {
        let s = secrets
            .iter()
            .find(|s| s.key_id == key_id && !s.is_current() && s.is_live(now_ms))?;
        Some(PreviousSecret {
            display: s.masked(),
            last_used_at: s.last_used_at.map(time_util::format_rfc3339),
            retires_at: s.life().due().map(time_util::format_rfc3339),
            retire_when_quiet: s.quiet_ms.is_some(),
            // Whole hundredths of a minute (the form's precision).
            quiet_minutes: s.quiet_ms.map(|q| (q / 600) as f64 / 100.0),
        })
    }
}

/// `POST /api/v1/keys/{id}/roll`: when the previous secret retires.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollKey {
    /// `when_quiet` (the default), `now` or `at`.
    pub retire_previous: Option<String>,
    /// With `when_quiet`: minutes without a request (default 60; two decimals at most).
    #[schema(value_type = Option<f64>)]
    pub quiet_minutes: Option<serde_json::Number>,
    /// With `when_quiet`: retired after this many days regardless (default 7, at most 90).
    pub deadline_days: Option<u32>,
    /// With `at`: when (RFC 3339, UTC, a whole minute, within 90 days).
    pub at: Option<String>,
}

pub fn status_word(state: KeyState) -> &'static str {
    match state {
        KeyState::Active => "active",
        KeyState::Disabled | KeyState::Idle => "disabled",
        KeyState::Expired => "expired",
        KeyState::Revoked => "revoked",
    }
}

impl KeyObject {
    pub fn new(k: &KeyRow, now_ms: i64) -> Self {
        KeyObject {
            id: k.public_id.clone().unwrap_or_default(),
            name: k.name.clone(),
            display: k.masked(),
            status: status_word(k.state(now_ms)),
            models: k.models.iter().map(str::to_owned).collect(),
            region: k.region.clone(),
            daily_limit: k.daily_limit.map(Credits::exact),
            monthly_limit: k.monthly_limit.map(Credits::exact),
            rpm_limit: k.rpm_limit,
            concurrency_limit: k.concurrency_limit,
            disable_after_days: k.disable_after_days,
            expires_at: k.expires_at.map(time_util::format_rfc3339),
            created_at: time_util::format_rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(time_util::format_rfc3339),
            last_refusal: None,
            spend_today: k.spent_today(now_ms).exact(),
            spend_this_month: k.spent_this_month(now_ms).exact(),
            previous_secret: None,
        }
    }

    /// With the key's last refusal (`Store::key_activity`).
    pub fn with_activity(mut self, activity: Option<&KeyActivity>) -> Self {
        self.last_refusal = activity
            .and_then(|a| a.last_refusal.as_ref())
            .map(|r| LastRefusal {
                at: time_util::format_rfc3339(r.at),
                status: r.http_status,
                code: r.code.clone(),
                generation_id: r.generation_id.clone(),
            });
        self
    }

    /// With the key's pending previous secret (see [`PreviousSecret::of`]).
    pub fn with_secrets(mut self, k: &KeyRow, secrets: &[SecretRow], now_ms: i64) -> Self {
        self.previous_secret = PreviousSecret::of(k.id, secrets, now_ms);
        self
    }
}

/// `{"data": key}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyData {
    pub data: KeyObject,
}

/// `{"data": key, "token": "lr-sk-…"}`: the only time the token is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub data: KeyObject,
    pub token: String,
}

/// A page of keys, newest first; `next_cursor` (null on the last page) is `?cursor=`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyObject>,
    pub next_cursor: Option<String>,
}
