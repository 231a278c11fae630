//! The New key / Edit key form: raw input as typed (kept for re-rendering) and its parse
//! into a [`KeySpec`], with one message per wrong field. The management API builds the same
//! [`KeyFormInput`] from its JSON and uses this parse too: one validator, not two.

use time::Date;

use super::credits::{Credits, CreditsError};
pub use super::key_name::{name_skeleton, parse_name, NAME_MAX_CHARS};
use super::time_util;
use crate::catalogue::Catalogue;

/// What the user typed, unchanged, so a form with errors comes back exactly as it was.
#[derive(Debug, Clone, Default)]
pub struct KeyFormInput {
    pub name: String,
    pub models: Vec<String>,
    pub region: String,
    pub daily_limit: String,
    pub monthly_limit: String,
    /// `YYYY-MM-DD`, the last day the key works; the API may also send the instant it stops
    /// as RFC 3339, which must then be a UTC midnight (expiry is per UTC day).
    pub expires: String,
    pub rpm_limit: String,
    pub concurrency_limit: String,
    /// Days without use after which the key disables itself; empty: never.
    pub disable_after_days: String,
}

/// A key's name and scoping, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// NFC, without invisible characters (see `key_name`).
    pub name: String,
    /// Empty: every model.
    pub models: Vec<String>,
    pub region: Option<String>,
    pub daily_limit: Option<Credits>,
    pub monthly_limit: Option<Credits>,
    /// Last day (UTC) on which the key works.
    pub expires_on: Option<Date>,
    /// Requests per minute; None: no limit.
    pub rpm_limit: Option<u32>,
    /// Requests in flight at once; None: no limit.
    pub concurrency_limit: Option<u32>,
    /// Disabled after this many days without a request; None: never.
    pub disable_after_days: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors {
    pub name: Option<String>,
    pub models: Option<String>,
    pub region: Option<String>,
    pub daily_limit: Option<String>,
    pub monthly_limit: Option<String>,
    pub expires: Option<String>,
    pub rpm_limit: Option<String>,
    pub concurrency_limit: Option<String>,
    pub disable_after_days: Option<String>,
}

impl FieldErrors {
    pub fn is_empty(&self) -> bool {
        *self == FieldErrors::default()
    }

    /// The first wrong field, by the API's name for it, and its message.
    pub fn first(&self) -> Option<(&'static str, &str)> {
        [
            ("name", &self.name),
            ("models", &self.models),
            ("region", &self.region),
            ("daily_limit", &self.daily_limit),
            ("monthly_limit", &self.monthly_limit),
            ("expires_at", &self.expires),
            ("rpm_limit", &self.rpm_limit),
            ("concurrency_limit", &self.concurrency_limit),
            ("disable_after_days", &self.disable_after_days),
        ]
        .into_iter()
        .find_map(|(field, e)| e.as_deref().map(|m| (field, m)))
    }
}

/// Highest requests-per-minute or concurrency limit accepted.
pub const RATE_LIMIT_MAX: u32 = 1_000_000;

/// Longest "disable after N days without use" accepted (ten years).
pub const DISABLE_AFTER_DAYS_MAX: u32 = 3650;

/// An optional whole number from 1 to `max` (empty: none); `refusal` says what to enter.
fn parse_optional_count(raw: &str, max: u32, refusal: &str) -> Result<Option<u32>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
        _ => Err(refusal.to_owned()),
    }
}

fn parse_days(raw: &str) -> Result<Option<u32>, String> {
    parse_optional_count(raw, DISABLE_AFTER_DAYS_MAX, &format!(
        "Enter a number of days from 1 to {DISABLE_AFTER_DAYS_MAX}, or leave empty to keep the key enabled however long it goes unused."
    ))
}

fn parse_count(raw: &str) -> Result<Option<u32>, String> {
    parse_optional_count(
        raw,
        RATE_LIMIT_MAX,
        &format!("Enter a whole number from 1 to {RATE_LIMIT_MAX}, or leave empty for no limit."),
    )
}

/// The last day a key works, from a date or from the RFC 3339 instant it stops (a UTC
/// midnight: the start of the day after the last one).
fn parse_expiry(s: &str) -> Result<Date, &'static str> {
    if let Some(d) = time_util::parse_date(s) {
        return Ok(d);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "Enter a date as YYYY-MM-DD.")?
        .to_offset(time::UtcOffset::UTC);
    if t.time() != time::Time::MIDNIGHT {
        return Err("Keys expire at a UTC midnight: send a date (YYYY-MM-DD, the last day the key works) or a time of 00:00:00Z.");
    }
    t.date().previous_day().ok_or("Enter a date as YYYY-MM-DD.")
}

fn parse_limit(raw: &str) -> Result<Option<Credits>, String> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    match Credits::parse(raw) {
        Ok(c) if c.micros() > 0 => Ok(Some(c)),
        Ok(_) => Err("Enter an amount above zero, or leave empty for no limit.".into()),
        Err(CreditsError::Negative) => Err(
            "A limit cannot be negative: enter an amount above zero, or leave empty for no limit."
                .into(),
        ),
        Err(CreditsError::NotANumber) => Err(
            "Enter the limit as a number of credits, such as 10 or 2.50 (digits and one decimal point only)."
                .into(),
        ),
        Err(CreditsError::TooPrecise) => {
            Err("Use at most 6 decimal places: 0.000001 credits is the smallest amount.".into())
        }
        Err(CreditsError::TooLarge) => Err(
            "That is more than any account can spend: enter at most 999,999,999 credits, or leave empty for no limit."
                .into(),
        ),
    }
}

impl KeyFormInput {
    /// `today` is the current UTC date: an expiry date in the past is refused.
    /// Long on purpose: one parse per field, every error collected (a form shows them all).
    pub fn parse(&self, catalogue: &Catalogue, today: Date) -> Result<KeySpec, Box<FieldErrors>> {
        let mut errors = FieldErrors::default();
        let name = parse_name(&self.name)
            .map_err(|e| errors.name = Some(e))
            .ok();

        let mut models: Vec<String> = Vec::new();
        for m in &self.models {
            let m = m.trim();
            if m.is_empty() || models.iter().any(|x| x == m) {
                continue;
            }
            if catalogue.model(m).is_none() {
                errors.models = Some("Choose models from the list.".into());
                break;
            }
            models.push(m.to_owned());
        }

        let region = match self.region.trim() {
            "" => None,
            r if catalogue.regions.iter().any(|x| x == r) => Some(r.to_owned()),
            _ => {
                errors.region = Some("Choose a region from the list.".into());
                None
            }
        };
        let daily_limit = parse_limit(&self.daily_limit)
            .map_err(|e| errors.daily_limit = Some(e))
            .ok()
            .flatten();
        let monthly_limit = parse_limit(&self.monthly_limit)
            .map_err(|e| errors.monthly_limit = Some(e))
            .ok()
            .flatten();
        if let (Some(d), Some(m)) = (daily_limit, monthly_limit) {
            if d > m {
                errors.daily_limit =
                    Some("The daily limit cannot be above the monthly limit.".into());
            }
        }
        let expires_on = match self.expires.trim() {
            "" => None,
            s => match parse_expiry(s) {
                Ok(d) if d >= today => Some(d),
                Ok(_) => {
                    errors.expires = Some("Choose today or a later date.".into());
                    None
                }
                Err(e) => {
                    errors.expires = Some(e.into());
                    None
                }
            },
        };
        let rpm_limit = parse_count(&self.rpm_limit)
            .map_err(|e| errors.rpm_limit = Some(e))
            .ok()
            .flatten();
        let concurrency_limit = parse_count(&self.concurrency_limit)
            .map_err(|e| errors.concurrency_limit = Some(e))
            .ok()
            .flatten();
        let disable_after_days = parse_days(&self.disable_after_days)
            .map_err(|e| errors.disable_after_days = Some(e))
            .ok()
            .flatten();
        match name {
            Some(name) if errors.is_empty() => Ok(KeySpec {
                name,
                models,
                region,
                daily_limit,
                monthly_limit,
                expires_on,
                rpm_limit,
                concurrency_limit,
                disable_after_days,
            }),
            _ => Err(Box::new(errors)),
        }
    }

    /// The form pre-filled from an existing key (for Edit).
    pub fn from_spec(spec: &KeySpec) -> Self {
        KeyFormInput {
            name: spec.name.clone(),
            models: spec.models.clone(),
            region: spec.region.clone().unwrap_or_default(),
            daily_limit: spec
                .daily_limit
                .map(|c| c.display_precise())
                .unwrap_or_default(),
            monthly_limit: spec
                .monthly_limit
                .map(|c| c.display_precise())
                .unwrap_or_default(),
            expires: spec.expires_on.map(|d| d.to_string()).unwrap_or_default(),
            rpm_limit: spec.rpm_limit.map(|n| n.to_string()).unwrap_or_default(),
            concurrency_limit: spec
                .concurrency_limit
                .map(|n| n.to_string())
                .unwrap_or_default(),
            disable_after_days: spec
                .disable_after_days
                .map(|n| n.to_string())
                .unwrap_or_default(),
        }
    }
}

impl KeySpec {
    /// The name's confusable skeleton, which the store keeps unique among live keys.
    pub fn name_skeleton(&self) -> String {
        name_skeleton(&self.name)
    }

    /// The instant the key stops working: the start of the UTC day after `expires_on`.
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.expires_on
            .map(|d| time_util::date_start_ms(d) + 86_400_000)
    }
}
