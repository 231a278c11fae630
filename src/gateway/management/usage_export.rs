//! `GET /api/v1/usage/export`: every usage row of a period, oldest first, streamed as NDJSON
//! or CSV (`service::usage_export`), for accounting before retention removes them. A cut
//! transfer resumes with `after=<id of the last complete row>`.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{authenticate, Intent};
use super::store_error;
use crate::domain::text::GenerationId;
use crate::domain::time_util;
use crate::gateway::error::ApiError;
use crate::service::usage_export::{encode, parse_instant, ExportFormat};
use crate::state::AppState;

/// The period and how to send it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read through the query map: these fields document the parameters.
pub struct ExportQuery {
    /// Inclusive: `YYYY-MM-DD` (UTC midnight) or unix seconds.
    start: String,
    /// Exclusive, as `start`; default now.
    end: Option<String>,
    /// `ndjson` (default) or `csv`.
    format: Option<String>,
    /// The `id` of the last row received: the export goes on strictly after it.
    after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/usage/export", tag = "management", params(ExportQuery),
    security(("management_key" = [])),
    responses((status = 200, description = "NDJSON or CSV, streamed", content_type = "application/x-ndjson"),
        (status = 400, body = crate::gateway::openapi::ErrorBody)))]
pub async fn export(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let m = authenticate(&state, &req, Intent::Read).await?;
    let instant = |name: &str, default: Option<i64>| -> Result<i64, ApiError> {
        match query.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
            Some(s) => parse_instant(s).ok_or_else(|| {
                ApiError::invalid_param(
                    name,
                    format!("`{name}` must be a date (2026-11-01) or unix seconds."),
                )
            }),
            None => default
                .ok_or_else(|| ApiError::invalid_param(name, format!("`{name}` is required."))),
        }
    };
    let start = instant("start", None)?;
    let end = instant("end", Some(time_util::now_ms()))?;
    if end <= start {
        return Err(ApiError::invalid_param(
            "end",
            "`end` must be after `start`.",
        ));
    }
    let format = ExportFormat::parse(query.get("format").map_or("", |s| s.trim()))
        .ok_or_else(|| ApiError::invalid_param("format", "`format` must be `ndjson` or `csv`."))?;
    let bad_after =
        || ApiError::invalid_param("after", "`after` must be the `id` of an exported row.");
    let after = match query
        .get("after")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        Some(a) => Some(GenerationId::parse(a).ok_or_else(bad_after)?),
        None => None,
    };
    // Rows answered a moment ago are in the database before the first page is read.
    state.usage.settled().await;
    let pages = state
        .store
        .stream_usage_period(m.account_id(), start, end, after.as_ref())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => bad_after(),
            e => store_error("The usage row")(e),
        })?;
    // The CSV header comes once, at the start of a transfer (not when resuming).
    let mut header = format == ExportFormat::Csv && after.is_none();
    let body = pages.map(move |page| match page {
        Ok(rows) => {
            let bytes = encode(&rows, format, header);
            header = false;
            Ok(web::Bytes::from(bytes))
        }
        Err(e) => {
            // Mid-stream the status is sent: the transfer ends short, and the client
            // resumes from its last complete row.
            tracing::error!(error = %e, "usage export: a page failed");
            Err(actix_web::error::ErrorInternalServerError(
                "usage export failed",
            ))
        }
    });
    let name = format!(
        "lowrouter-usage-{}-{}.{}",
        time_util::format_date(start),
        time_util::format_date(end - 1),
        if format == ExportFormat::Csv {
            "csv"
        } else {
            "ndjson"
        }
    );
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .streaming(body))
}
