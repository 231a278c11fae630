//! Audit page (owners and admins): the workspace's events newest first, filtered by actor,
//! action, key and date, keyset-paginated, and exported as CSV. A key's own history is on
//! its page (`key_life::show`), from the same query.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::keys::html;
use super::{Dashboard, Layout};
use crate::domain::audit::{Action, AuditFilter};
use crate::domain::event_id::EventIds;
use crate::domain::time_util;
use crate::state::AppState;
use crate::store::audit::AuditRow;

const PAGE: u32 = 50;
/// CSV exports read this many rows per query.
const CSV_PAGE: u32 = 1000;

/// An event as the page shows it.
pub struct EventView {
    pub at: String,
    pub actor: String,
    pub actor_kind: String,
    pub action: String,
    pub target: String,
    pub details: String,
    pub client: String,
}

impl EventView {
    pub fn new(r: &AuditRow) -> EventView {
        EventView {
            at: time_util::format_second(r.at),
            actor: r.actor_label.clone(),
            actor_kind: r.actor_kind.replace('_', " "),
            action: r.action.clone(),
            target: match (&r.target_kind, &r.target_label) {
                (Some(k), Some(l)) => format!("{} “{l}”", k.replace('_', " ")),
                _ => String::new(),
            },
            details: readable_details(&r.details),
            client: [r.client_addr.as_deref(), r.user_agent.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · "),
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPageView {
    layout: Layout,
    events: Vec<EventView>,
    actions: Vec<&'static str>,
    q: HashMap<String, String>,
    error: Option<String>,
    next: Option<String>,
    csv: String,
}

impl AuditPageView {
    fn q(&self, name: &str) -> &str {
        self.q.get(name).map_or("", String::as_str)
    }
}

fn get<'a>(q: &'a HashMap<String, String>, name: &str) -> &'a str {
    q.get(name).map_or("", String::as_str)
}

/// The page's filters; `key` is a key's row id (the dashboard's name for keys).
fn parse(q: &HashMap<String, String>, ids: &EventIds) -> Result<AuditFilter, String> {
    let mut f = AuditFilter::parse(
        get(q, "actor"),
        get(q, "action"),
        get(q, "from"),
        get(q, "to"),
        get(q, "before"),
        ids,
    )
    .map_err(|(_, m)| m.to_owned())?;
    let key = get(q, "key");
    if !key.is_empty() {
        f.key_id = Some(crate::domain::KeyId::parse(key).ok_or("Unknown key.")?);
    }
    f.limit = PAGE;
    Ok(f)
}

/// A link to the same filters with another `before` (an event's public id).
fn query_with(q: &HashMap<String, String>, before: Option<String>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for name in ["actor", "action", "key", "from", "to"] {
        let v = get(q, name);
        if !v.is_empty() {
            s.append_pair(name, v);
        }
    }
    if let Some(b) = before {
        s.append_pair("before", &b);
    }
    s.finish()
}

pub async fn list(
    state: web::Data<AppState>,
    user: Dashboard,
    query: web::Query<HashMap<String, String>>,
) -> WebResult<HttpResponse> {
    let q = query.into_inner();
    let (events, next, error, status) = match parse(&q, &state.event_ids) {
        Ok(f) => {
            let page = state.store.audit_page(user.workspace(), &f).await?;
            let events = page.events.iter().map(EventView::new).collect();
            (events, page.next, None, StatusCode::OK)
        }
        Err(e) => (Vec::new(), None, Some(e), StatusCode::BAD_REQUEST),
    };
    let page = AuditPageView {
        layout: user.layout("audit"),
        events,
        actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
        next: next.map(|n| query_with(&q, Some(state.event_ids.public(n)))),
        csv: query_with(&q, None),
        q,
        error,
    };
    html(status, page.render()?)
}

const CSV_HEADER: [&str; 9] = [
    "time",
    "actor_kind",
    "actor",
    "action",
    "target_kind",
    "target",
    "details",
    "client_address",
    "user_agent",
];

/// One page of events as CSV rows (text cells defused against formula injection).
fn csv_page(rows: &[AuditRow]) -> web::Bytes {
    let mut out = String::with_capacity(rows.len() * 200);
    for r in rows {
        let cells = [
            time_util::format_rfc3339(r.at),
            r.actor_kind.clone(),
            r.actor_label.clone(),
            r.action.clone(),
            r.target_kind.clone().unwrap_or_default(),
            r.target_label.clone().unwrap_or_default(),
            r.details.clone(),
            r.client_addr.clone().unwrap_or_default(),
            r.user_agent.clone().unwrap_or_default(),
        ];
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            super::usage_csv::csv_text_cell(&mut out, c);
        }
        out.push_str("\r\n");
    }
    web::Bytes::from(out)
}

/// Every event the filters select, as CSV, streamed page by page (memory stays flat).
pub async fn export_csv(
    state: web::Data<AppState>,
    user: Dashboard,
    query: web::Query<HashMap<String, String>>,
) -> WebResult<HttpResponse> {
    let mut f = parse(&query, &state.event_ids).map_err(WebError::BadRequest)?;
    f.before = None;
    f.limit = CSV_PAGE;
    let pages = state.store.stream_audit(user.workspace(), f);
    super::usage_csv::csv_download("lowrouter-audit.csv", &CSV_HEADER, pages, csv_page)
}

/// An event's details as a person reads them: `daily limit: none → 5.00; models: every
/// model → openai/gpt-4o` for an edit's changes, `name: ci; region: eu-west` for other
/// details. Anything that is not a JSON object shows as stored.
pub fn readable_details(details: &str) -> String {
    use serde_json::Value;
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(details) else {
        return details.to_owned();
    };
    let label = |k: &str| k.replace('_', " ");
    let value = |field: &str, v: &Value| match v {
        Value::Null => "none".to_owned(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::String(s) if s.is_empty() => "none".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() && field == "models" => "every model".to_owned(),
        Value::Array(a) if a.is_empty() => "none".to_owned(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let mut parts = Vec::new();
    for (k, v) in &map {
        match (k.as_str(), v) {
            ("changes", Value::Object(changes)) => {
                for (field, change) in changes {
                    let from = change.get("from").unwrap_or(&Value::Null);
                    let to = change.get("to").unwrap_or(&Value::Null);
                    parts.push(format!(
                        "{}: {} → {}",
                        label(field),
                        value(field, from),
                        value(field, to)
                    ));
                }
            }
            _ => parts.push(format!("{}: {}", label(k), value(k, v))),
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod readable_tests {
    use super::readable_details;

    #[test]
    fn details_read_as_changes_and_fields() {
        assert_eq!(
            readable_details(
                r#"{"changes":{"daily_limit":{"from":null,"to":"5.00"},"models":{"from":[],"to":["openai/gpt-4o","lowrouter/echo"]}}}"#
            ),
            "daily limit: none → 5.00; models: every model → openai/gpt-4o, lowrouter/echo"
        );
        assert_eq!(
            readable_details(r#"{"name":"ci","read_only":true,"region":null}"#),
            "name: ci; read only: yes; region: none"
        );
        assert_eq!(readable_details("{}"), "");
        assert_eq!(readable_details("not json"), "not json");
    }
}
