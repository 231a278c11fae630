//! Audit page (owners and admins): the workspace's events newest first, filtered by actor,
//! action, key and date, keyset-paginated, and exported as CSV. A key's own history is on
//! its page (`key_life::show`), from the same query.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use askama::Template;

use super::error::{WebError, WebResult};
use super::keys::html;
use super::{Dashboard, Layout};
use crate::domain::audit::{Action, AuditFilter};
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
            details: if r.details == "{}" {
                String::new()
            } else {
                r.details.clone()
            },
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
fn parse(q: &HashMap<String, String>) -> Result<AuditFilter, String> {
    let mut f = AuditFilter::parse(
        get(q, "actor"),
        get(q, "action"),
        get(q, "from"),
        get(q, "to"),
        get(q, "before"),
    )
    .map_err(|(_, m)| m.to_owned())?;
    let key = get(q, "key");
    if !key.is_empty() {
        f.key_id = Some(crate::domain::KeyId::parse(key).ok_or("Unknown key.")?);
    }
    f.limit = PAGE;
    Ok(f)
}

/// A link to the same filters with another `before`.
fn query_with(q: &HashMap<String, String>, before: Option<i64>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for name in ["actor", "action", "key", "from", "to"] {
        let v = get(q, name);
        if !v.is_empty() {
            s.append_pair(name, v);
        }
    }
    if let Some(b) = before {
        s.append_pair("before", &b.to_string());
    }
    s.finish()
}

pub async fn list(
    state: web::Data<AppState>,
    user: Dashboard,
    query: web::Query<HashMap<String, String>>,
) -> WebResult<HttpResponse> {
    let q = query.into_inner();
    let (events, next, error, status) = match parse(&q) {
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
        next: next.map(|n| query_with(&q, Some(n))),
        csv: query_with(&q, None),
        q,
        error,
    };
    html(status, page.render()?)
}

/// Every event the filters select, as CSV (text cells defused against formula injection).
pub async fn export_csv(
    state: web::Data<AppState>,
    user: Dashboard,
    query: web::Query<HashMap<String, String>>,
) -> WebResult<HttpResponse> {
    let mut f = parse(&query).map_err(WebError::BadRequest)?;
    f.before = None;
    f.limit = CSV_PAGE;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let csv_err = |e: csv::Error| WebError::internal(e);
    w.write_record([
        "time",
        "actor_kind",
        "actor",
        "action",
        "target_kind",
        "target",
        "details",
        "client_address",
        "user_agent",
    ])
    .map_err(csv_err)?;
    loop {
        let page = state.store.audit_page(user.workspace(), &f).await?;
        for r in &page.events {
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
            w.write_record(
                cells
                    .iter()
                    .map(|c| super::usage_csv::defuse(c).into_owned()),
            )
            .map_err(csv_err)?;
        }
        match page.next {
            Some(n) => f.before = Some(n),
            None => break,
        }
    }
    let body = w.into_inner().map_err(WebError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"lowrouter-audit.csv\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}
