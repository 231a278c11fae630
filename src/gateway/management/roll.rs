//! `POST /api/v1/keys/{id}/roll`: the dashboard's Roll, for scripts. The key gets a new
//! secret (same id, scoping, limits, spend and history), shown once in the answer; the
//! previous one keeps working until it retires as chosen. Safe to retry: a repeated roll
//! replaces a new secret that never served a request instead of retiring the deployed one,
//! so at most two secrets work and the one in use keeps working (`Store::roll_key`).

use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{authenticate, Intent};
use super::body::{parse_json, CreatedKey, RollKey};
use super::keys::{changeable, key_object, settled, KEY};

use crate::domain::roll_form::RollFormInput;
use crate::domain::time_util;
use crate::gateway::error::ApiError;
use crate::state::AppState;
use crate::store::keys::KeyStatus;

#[utoipa::path(post, path = "/api/v1/keys/{id}/roll", tag = "management", request_body = RollKey,
    params(("id" = String, Path, description = "`key_…`")), security(("management_key" = [])),
    responses((status = 200, description = "The key with its new secret; `token` is shown this once", body = CreatedKey),
        (status = 400, body = crate::gateway::openapi::ErrorBody),
        (status = 403, description = "`read_only_key`, or `email_unverified`: the key's person has not verified their email", body = crate::gateway::openapi::ErrorBody), (status = 404, body = crate::gateway::openapi::ErrorBody)))]
pub async fn roll(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Write).await?;
    let cleared = m.cleared(&state).await?;
    let body = super::read_body(payload).await?;
    // Every answered request's last use must be in before a roll decides whether the current
    // secret ever served one (see the module's doc).
    settled(&state, &m).await;
    let key = changeable(&state, &m, &path).await?;
    if key.status == KeyStatus::Revoked {
        return Err(ApiError::not_found(KEY));
    }
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        RollKey::default()
    } else {
        parse_json::<RollKey>(&body)?
    };
    let now = time_util::now_ms();
    let (input, param) = form_input(&request)?;
    let retire = input
        .parse(now)
        .map_err(|message| ApiError::invalid_param(param, message))?;
    let ws = m.account_id();
    let token = crate::service::keys::roll(&state.store, ws, key.id, retire, &m.actor, cleared)
        .await
        .map_err(super::keys::key_error)?;
    tracing::info!(
        account_id = %m.account_id(),
        key_id = %key.id,
        via = "api",
        "key rolled"
    );
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(CreatedKey {
            data: key_object(&state, &m, key.id).await?,
            token: token.expose().to_owned(),
        }))
}

/// The request as the dashboard's Roll form would have it (one validator for both), and the
/// field its errors name.
fn form_input(r: &RollKey) -> Result<(RollFormInput, &'static str), ApiError> {
    let mode = r.retire_previous.as_deref().unwrap_or("when_quiet");
    let mut input = RollFormInput::defaults();
    input.retire = mode.to_owned();
    match mode {
        "now" => Ok((input, "retire_previous")),
        "at" => {
            let bad = || {
                ApiError::invalid_param(
                    "at",
                    "`at` must be an RFC 3339 UTC time on a whole minute, within 90 days.",
                )
            };
            let at = r.at.as_deref().ok_or_else(bad)?;
            let t = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad())?
                .to_offset(time::UtcOffset::UTC);
            if t.second() != 0 || t.nanosecond() != 0 {
                return Err(bad());
            }
            input.at = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            );
            Ok((input, "at"))
        }
        "when_quiet" => {
            if let Some(q) = &r.quiet_minutes {
                input.quiet_minutes = q.to_string();
            }
            if let Some(d) = r.deadline_days {
                input.deadline_days = d.to_string();
            }
            let param = if r.quiet_minutes.is_some() {
                "quiet_minutes"
            } else {
                "deadline_days"
            };
            Ok((input, param))
        }
        _ => Err(ApiError::invalid_param(
            "retire_previous",
            "`retire_previous` must be when_quiet, now or at.",
        )),
    }
}
