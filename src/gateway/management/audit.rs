//! `GET /api/v1/audit`: the workspace's audit events, newest first, keyset paginated, with
//! the Audit page's filters (`actor`, `action`, `key` as a `key_…` id, `from`, `to`).

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{authenticate, Intent};
use super::{parse_limit, store_error};
use crate::domain::audit::AuditFilter;
use crate::domain::event_id::EventIds;
use crate::domain::public_id::KeyPublicId;
use crate::domain::time_util;
use crate::gateway::error::ApiError;
use crate::state::AppState;
use crate::store::audit::AuditRow;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read through the query map: these fields document the parameters.
pub struct AuditQuery {
    /// Part of the actor's email or management key name, any case.
    actor: Option<String>,
    /// An event name, e.g. `key.created`, `key.edited`, `member.removed`, `login.failed`.
    action: Option<String>,
    /// One key's events: its `key_…` id.
    key: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC).
    from: Option<String>,
    /// `YYYY-MM-DD`, inclusive (UTC).
    to: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<String>,
}

/// Who acted.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActor {
    /// `user`, `management_key`, `cli` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The email or management key name at the time.
    pub label: String,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
}

/// What the event was about.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditTarget {
    /// `key`, `management_key`, `member` or `invitation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `key_…` or `mk_…` for keys; null otherwise.
    pub id: Option<String>,
    /// Its name or email at the time.
    pub label: Option<String>,
}

/// One audit event. Never holds a token, password or secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditObject {
    /// Opaque; also the `cursor` that pages past it.
    pub id: String,
    pub time: String,
    pub action: String,
    pub actor: AuditActor,
    pub target: Option<AuditTarget>,
    /// Event details, e.g. a key edit's `{"changes": {"name": {"from": …, "to": …}}}`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl AuditObject {
    fn new(r: &AuditRow, ids: &EventIds) -> Self {
        AuditObject {
            id: ids.public(r.id),
            time: time_util::format_rfc3339(r.at),
            action: r.action.clone(),
            actor: AuditActor {
                kind: r.actor_kind.clone(),
                label: r.actor_label.clone(),
                client_address: r.client_addr.clone(),
                user_agent: r.user_agent.clone(),
            },
            target: r.target_kind.as_ref().map(|k| AuditTarget {
                kind: k.clone(),
                id: r.target_public_id.clone(),
                label: r.target_label.clone(),
            }),
            details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub data: Vec<AuditObject>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "management", params(AuditQuery),
    security(("management_key" = [])),
    responses((status = 200, body = AuditList), (status = 400, body = crate::gateway::openapi::ErrorBody),
        (status = 401, body = crate::gateway::openapi::ErrorBody)))]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::ReadAudit).await?;
    let get = |name: &str| query.get(name).map_or("", String::as_str);
    let mut filter = AuditFilter::parse(
        get("actor"),
        get("action"),
        get("from"),
        get("to"),
        get("cursor"),
        &state.event_ids,
    )
    .map_err(|(param, message)| ApiError::invalid_param(param, message))?;
    filter.limit = parse_limit(query.get("limit").map(String::as_str))?;
    if !get("key").is_empty() {
        let id = KeyPublicId::parse(get("key"))
            .ok_or_else(|| ApiError::invalid_param("key", "`key` must be a key id (`key_…`)."))?;
        // Another workspace's key is no key here: its events are not this workspace's.
        let key = state
            .store
            .key_by_public_id(m.account_id(), &id)
            .await
            .map_err(store_error("The key"))?;
        filter.key_id = Some(key.id);
    }
    let page = state
        .store
        .audit_page(m.account_id(), &filter)
        .await
        .map_err(store_error("The audit event"))?;
    Ok(HttpResponse::Ok().json(AuditList {
        data: page
            .events
            .iter()
            .map(|r| AuditObject::new(r, &state.event_ids))
            .collect(),
        next_cursor: page.next.map(|n| state.event_ids.public(n)),
    }))
}
