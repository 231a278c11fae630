//! The Usage page's filter: the query string as typed ([`FilterInput`], echoed back into the
//! form and into links that keep it) parsed into a store [`UsageFilter`], each bad value a
//! message. Shared by the page, its CSV export and the management API's `/usage`.

use std::collections::HashMap;

use crate::domain::reasons;
use crate::domain::text::has_control;
use crate::domain::{time_util, KeyId};
use crate::store::usage::{RowCursor, UsageFilter, UsageStatus};

/// The query string as typed, echoed back into the filter form.
#[derive(Debug, Default, Clone)]
pub struct FilterInput {
    pub key: String,
    /// A key by id (the Keys pages' links): its requests under every name it had.
    pub key_id: String,
    pub from: String,
    pub to: String,
    pub model: String,
    pub provider: String,
    pub region: String,
    pub status: String,
}

/// Parses the query string; each bad value yields a message and is ignored.
/// Long on purpose: one check per filter field, in the order of the form.
pub fn parse_filter(
    q: &HashMap<String, String>,
) -> (FilterInput, UsageFilter, Option<RowCursor>, Vec<String>) {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let input = FilterInput {
        key: get("key"),
        key_id: get("key_id"),
        from: get("from"),
        to: get("to"),
        model: get("model"),
        provider: get("provider"),
        region: get("region"),
        status: get("status"),
    };
    let mut errors = Vec::new();
    // A value with control characters cannot match anything stored (and PostgreSQL refuses
    // NUL): it is reported and ignored, never sent to the database.
    let mut text = |s: &str, label: &str| {
        if has_control(s) {
            errors.push(format!("“{label}” must not contain control characters."));
            return None;
        }
        (!s.is_empty()).then(|| s.chars().take(200).collect::<String>())
    };
    let key_name = text(&input.key, "Key");
    let model = text(&input.model, "Model");
    let provider = text(&input.provider, "Provider");
    let region = text(&input.region, "Region");
    let mut date = |s: &str, label: &str| -> Option<time::Date> {
        if s.is_empty() {
            return None;
        }
        let d = time_util::parse_date(s);
        if d.is_none() {
            errors.push(format!("“{label}” must be a date like 2026-11-27."));
        }
        d
    };
    let from = date(&input.from, "From");
    let to = date(&input.to, "To");
    let key_id = match input.key_id.as_str() {
        "" => None,
        s => KeyId::parse(s).or_else(|| {
            errors.push("The key id is not valid; showing every key.".into());
            None
        }),
    };
    let mut filter = UsageFilter {
        // The Key field finds every key whose name contains the text, whatever its case.
        key_name: None,
        key_name_like: key_name.as_deref().map(UsageFilter::name_contains),
        key_id,
        from_ms: from.map(time_util::date_start_ms),
        // "To" is inclusive of that whole UTC day.
        to_ms: to.map(|d| time_util::date_start_ms(d) + 86_400_000),
        model,
        provider,
        region,
        status: None,
        error_code: None,
    };
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            errors.push("“From” must be on or before “To”.".into());
            filter.from_ms = None;
            filter.to_ms = None;
        }
    }
    // An outcome (ok, client_error, upstream_error) or one reason's code.
    if !input.status.is_empty() {
        filter.status = UsageStatus::parse(&input.status);
        if filter.status.is_none() {
            match reasons::reason_of(&input.status) {
                Some(_) => filter.error_code = Some(input.status.clone()),
                None => errors.push("Status must be one of the choices in its list.".into()),
            }
        }
    }
    let before = match cursor(q, "before") {
        Ok(c) => c,
        Err(BadCursor) => {
            errors.push("The page cursor is not valid; showing the newest rows.".into());
            None
        }
    };
    (input, filter, before, errors)
}

impl FilterInput {
    /// The filter as a query string (for links that keep it).
    pub fn query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("key", &self.key),
            ("key_id", &self.key_id),
            ("from", &self.from),
            ("to", &self.to),
            ("model", &self.model),
            ("provider", &self.provider),
            ("region", &self.region),
            ("status", &self.status),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

/// A page link's cursor that is not one (not numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadCursor;

/// A page link's cursor: `<name>=<row id>`, with `at=<its start, unix ms>` when the link
/// carries it (then no lookup is needed).
pub fn cursor(q: &HashMap<String, String>, name: &str) -> Result<Option<RowCursor>, BadCursor> {
    let id = match q.get(name).map(|s| s.trim()) {
        None | Some("") => return Ok(None),
        Some(s) => s.parse::<i64>().ok().filter(|n| *n > 0).ok_or(BadCursor)?,
    };
    let started_at = match q.get("at").map(|s| s.trim()) {
        None | Some("") => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| BadCursor)?),
    };
    Ok(Some(RowCursor { id, started_at }))
}
