//! `GET/POST /api/v1/keys`, `GET/PATCH/DELETE /api/v1/keys/{id}`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::auth::{authenticate, Intent, Manager};
use super::body::{
    field_error, parse_json, CreateKey, CreatedKey, KeyData, KeyList, KeyObject, PatchKey,
};
use super::{parse_limit, store_error};
use crate::domain::key_form::KeyFormInput;
use crate::domain::public_id::KeyPublicId;
use crate::domain::text::has_control;
use crate::domain::{time_util, ApiToken, KeyId};
use crate::gateway::error::ApiError;
use crate::service::keys::{self, KeyError};
use crate::state::AppState;
use crate::store::idempotency::Created;
use crate::store::keys::{KeyFilter, KeyRow, KeyStatus, KeySwitch};
use crate::store::StoreError;

pub(super) const KEY: &str = "The key";

/// A keys-service refusal as the API answers it: a field's 400 (`param`), or a 404.
pub(super) fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::NotFound => ApiError::not_found(KEY),
        KeyError::Store(e) => store_error(KEY)(e),
        e => field_error(&e.field_errors().unwrap_or_default()),
    }
}

/// `GET /api/v1/keys` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<String>,
    /// `active`, `disabled`, `expired` or `revoked`.
    pub status: Option<String>,
    /// Exact name.
    pub name: Option<String>,
}

/// Spend must include every request answered so far (as `/api/v1/key` does).
pub(super) async fn settled(state: &AppState, m: &Manager) {
    state.usage.settled().await;
    state.ledger.return_account_leases(m.account_id()).await;
}

fn filter(q: &ListQuery) -> Result<KeyFilter, ApiError> {
    let status = match q.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            ["active", "disabled", "expired", "revoked"]
                .into_iter()
                .find(|x| *x == s)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "status",
                        "`status` must be active, disabled, expired or revoked.",
                    )
                })?,
        ),
    };
    let name = match q.name.as_deref() {
        None | Some("") => None,
        Some(n) if has_control(n) || n.chars().count() > 200 => {
            return Err(ApiError::invalid_param(
                "name",
                "`name` must be a key name (no control characters).",
            ))
        }
        Some(n) => Some(n.to_owned()),
    };
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(KeyPublicId::parse(c).ok_or_else(|| {
            ApiError::invalid_param("cursor", "`cursor` must be a `next_cursor` from a page.")
        })?),
    };
    Ok(KeyFilter {
        status,
        name,
        after,
        limit: parse_limit(q.limit.as_deref())?,
    })
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "management", params(ListQuery),
    security(("management_key" = [])),
    responses((status = 200, body = KeyList), (status = 400, body = crate::gateway::openapi::ErrorBody)))]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Read).await?;
    let f = filter(&query)?;
    settled(&state, &m).await;
    let now = time_util::now_ms();
    let page = state
        .store
        .key_page(m.account_id(), &f, now)
        .await
        .map_err(store_error(KEY))?;
    let (secrets, activity) = futures_util::future::try_join(
        state.store.account_secrets(m.account_id()),
        state.store.key_activity(m.account_id(), None),
    )
    .await
    .map_err(store_error(KEY))?;
    Ok(HttpResponse::Ok().json(KeyList {
        data: page
            .keys
            .iter()
            .map(|k| {
                KeyObject::new(k, now)
                    .with_secrets(k, &secrets, now)
                    .with_activity(activity.get(&k.id))
            })
            .collect(),
        next_cursor: page.next,
    }))
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all("idempotency-key");
    let Some(v) = values.next() else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid_param(
            "Idempotency-Key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters, sent once.",
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if values.next().is_some()
        || s.is_empty()
        || s.len() > 255
        || !s.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// The key as the API shows it, with its pending previous secret.
pub(super) async fn key_object(
    state: &AppState,
    m: &Manager,
    id: KeyId,
) -> Result<KeyObject, ApiError> {
    let store = &state.store;
    let (row, secrets, activity) = futures_util::future::try_join3(
        store.key(m.account_id(), id),
        store.key_secrets(m.account_id(), id),
        store.key_activity(m.account_id(), Some(id)),
    )
    .await
    .map_err(store_error(KEY))?;
    let now = time_util::now_ms();
    Ok(KeyObject::new(&row, now)
        .with_secrets(&row, &secrets, now)
        .with_activity(activity.get(&id)))
}

#[utoipa::path(post, path = "/api/v1/keys", tag = "management", request_body = CreateKey,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "A retry with the same key and body within 24 h creates nothing: 409 `idempotency_replay` with the key (no token)")),
    security(("management_key" = [])),
    responses((status = 201, body = CreatedKey), (status = 400, body = crate::gateway::openapi::ErrorBody),
        (status = 403, description = "`read_only_key`, or `email_unverified`: the key's person has not verified their email", body = crate::gateway::openapi::ErrorBody),
        (status = 409, description = "`idempotency_replay`: `error` and `data` (the key, without its token)", body = crate::gateway::openapi::ReplayBody),
        (status = 422, body = crate::gateway::openapi::ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Write).await?;
    let cleared = m.cleared(&state).await?;
    let body = super::read_body(payload).await?;
    let idem = idempotency_key(&req)?;
    let input = parse_json::<CreateKey>(&body)?.input();
    let spec = keys::spec_for_create(&state.catalogue, &input, keys::today()).map_err(key_error)?;
    let token = ApiToken::generate();
    let created = match &idem {
        None => keys::create(
            &state.store,
            m.account_id(),
            &spec,
            &token,
            &m.actor,
            cleared,
        )
        .await
        .map(Created::New)
        .map_err(key_error),
        Some(k) => {
            let hash = hex::encode(Sha256::digest(&body));
            let once = keys::Once {
                key: k,
                request_hash: &hash,
            };
            let ws = m.account_id();
            keys::create_once(&state.store, ws, &spec, &token, once, &m.actor, cleared)
                .await
                .map_err(key_error)
        }
    };
    match created {
        Ok(Created::New(id)) => {
            tracing::info!(
                account_id = %m.account_id(),
                key_id = %id,
                via = "api",
                "key created"
            );
            let data = key_object(&state, &m, id).await?;
            Ok(HttpResponse::Created()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(CreatedKey {
                    data,
                    token: token.expose().to_owned(),
                }))
        }
        Ok(Created::Replay(id)) => {
            let e = ApiError::idempotency_replay();
            let mut body = e.body();
            body["data"] = serde_json::to_value(key_object(&state, &m, id).await?)
                .map_err(|_| ApiError::internal())?;
            Ok(e.response().json(body))
        }
        Ok(Created::Mismatch) => Err(ApiError::idempotency_mismatch()),
        Err(e) => Err(e),
    }
}

/// The key named by the path, of this account (another account's: 404, as a missing one).
pub(super) async fn owned(state: &AppState, m: &Manager, id: &str) -> Result<KeyRow, ApiError> {
    let id = KeyPublicId::parse(id).ok_or_else(|| ApiError::not_found(KEY))?;
    state
        .store
        .key_by_public_id(m.account_id(), &id)
        .await
        .map_err(store_error(KEY))
}

/// [`owned`], for a change: the management key's owner must be allowed to change it.
pub(super) async fn changeable(
    state: &AppState,
    m: &Manager,
    id: &str,
) -> Result<KeyRow, ApiError> {
    let key = owned(state, m, id).await?;
    if !m.may_change(&key) {
        return Err(ApiError::not_your_key());
    }
    Ok(key)
}

#[utoipa::path(get, path = "/api/v1/keys/{id}", tag = "management",
    params(("id" = String, Path, description = "`key_…`")), security(("management_key" = [])),
    responses((status = 200, body = KeyData), (status = 404, body = crate::gateway::openapi::ErrorBody)))]
pub async fn get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Read).await?;
    settled(&state, &m).await;
    let key = owned(&state, &m, &path).await?;
    Ok(HttpResponse::Ok().json(KeyData {
        data: key_object(&state, &m, key.id).await?,
    }))
}

#[utoipa::path(patch, path = "/api/v1/keys/{id}", tag = "management", request_body = PatchKey,
    params(("id" = String, Path, description = "`key_…`")), security(("management_key" = [])),
    responses((status = 200, body = KeyData), (status = 400, body = crate::gateway::openapi::ErrorBody),
        (status = 403, body = crate::gateway::openapi::ErrorBody), (status = 404, body = crate::gateway::openapi::ErrorBody)))]
pub async fn patch(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Write).await?;
    let body = super::read_body(payload).await?;
    let key = changeable(&state, &m, &path).await?;
    if key.status == KeyStatus::Revoked {
        return Err(ApiError::not_found(KEY));
    }
    let patch = parse_json::<PatchKey>(&body)?;
    let input = patch.apply(KeyFormInput::from_spec(&key.spec()));
    let spec =
        keys::spec_for_edit(&state.catalogue, &key, &input, keys::today()).map_err(key_error)?;
    let switch = patch.disabled.map(|off| {
        if off {
            KeySwitch::Disabled
        } else {
            KeySwitch::Enabled
        }
    });
    keys::update(
        &state.store,
        m.account_id(),
        key.id,
        &spec,
        switch,
        &m.actor,
    )
    .await
    .map_err(key_error)?;
    settled(&state, &m).await;
    Ok(HttpResponse::Ok().json(KeyData {
        data: key_object(&state, &m, key.id).await?,
    }))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "management",
    params(("id" = String, Path, description = "`key_…`")), security(("management_key" = [])),
    responses((status = 200, description = "Revoked (final); its token fails from the next request on", body = KeyData),
        (status = 403, body = crate::gateway::openapi::ErrorBody), (status = 404, body = crate::gateway::openapi::ErrorBody)))]
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Write).await?;
    let key = changeable(&state, &m, &path).await?;
    // Revoking a revoked key changes nothing and answers the same (a retry is safe).
    match state
        .store
        .revoke_key(m.account_id(), key.id, &m.actor)
        .await
    {
        Ok(()) => tracing::info!(
            account_id = %m.account_id(),
            key_id = %key.id,
            via = "api",
            "key revoked"
        ),
        Err(StoreError::NotFound) if key.status == KeyStatus::Revoked => {}
        Err(e) => return Err(store_error(KEY)(e)),
    }
    settled(&state, &m).await;
    Ok(HttpResponse::Ok().json(KeyData {
        data: key_object(&state, &m, key.id).await?,
    }))
}
