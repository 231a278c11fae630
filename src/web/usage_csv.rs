//! `GET /usage.csv`: the filtered usage rows as CSV, streamed page by page, with text cells
//! defused against spreadsheet formula injection.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;

use super::error::WebResult;
use super::usage::parse_filter;
use super::Dashboard;
use crate::domain::{time_util, Credits};
use crate::service::usage_filter::FilterInput;
use crate::state::AppState;
use crate::store::usage::ExportRow;

pub(super) use crate::service::usage_export::defuse;

const CSV_HEADER: [&str; 19] = [
    "generation_id",
    "started_at",
    "completed_at",
    "key_name",
    "requested_model",
    "resolved_model",
    "provider",
    "region",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_credits",
    "latency_ms",
    "status",
    "http_status",
    "error_code",
    "secret_last4",
    "secret",
    "key_id",
];

fn csv_writer(capacity: usize) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(capacity))
}

fn csv_finish(w: csv::Writer<Vec<u8>>) -> std::io::Result<web::Bytes> {
    w.into_inner()
        .map(web::Bytes::from)
        .map_err(|e| e.into_error())
}

/// One page of rows as CSV: one buffer per page, not per row. Text cells are defused
/// against formula injection and quoted when they need it; numbers are written as they are.
fn csv_page(rows: &[ExportRow]) -> web::Bytes {
    use std::fmt::Write;
    let mut out = String::with_capacity(rows.len() * 200);
    for r in rows {
        // Rows whose cells cannot be read were re-read by the store; never skip silently.
        let Some(c) = r.cells() else { continue };
        csv_text_cell(&mut out, &c[0]);
        out.push(',');
        utc_second(&mut out, r.started_at);
        out.push(',');
        utc_second(&mut out, r.completed_at);
        // All but the last cell (`streamed`, the period export's).
        for (i, cell) in c.iter().enumerate().take(c.len() - 1).skip(1) {
            out.push(',');
            match i {
                // Cost: micro-credits as credits with six decimals.
                9 => match cell.parse::<i64>() {
                    Ok(m) if m >= 0 => {
                        let _ = write!(out, "{}.{:06}", m / 1_000_000, m % 1_000_000);
                    }
                    Ok(m) => out.push_str(&Credits::from_micros(m).exact()),
                    Err(_) => csv_text_cell(&mut out, cell),
                },
                6..=8 | 10 | 12 => out.push_str(cell),
                // `lr-sk-Ab3d...x9Qz`: ASCII, as spreadsheets that read CSV as a legacy
                // code page would otherwise garble the ellipsis.
                15 => csv_text_cell(&mut out, &cell.replace('…', "...")),
                _ => csv_text_cell(&mut out, cell),
            }
        }
        out.push_str("\r\n");
    }
    web::Bytes::from(out)
}

/// A text cell: defused, and quoted (RFC 4180) when it holds a comma, quote or line break.
pub(super) fn csv_text_cell(out: &mut String, s: &str) {
    let s = defuse(s);
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&s);
    }
}

/// `2026-11-27T14:03:05Z` (RFC 3339, which spreadsheets and every CSV reader take as a date
/// and time), as `time_util::format_rfc3339` writes it, without allocating: the export
/// formats two per row. Civil date from days (H. Hinnant's algorithm).
fn utc_second(out: &mut String, ms: i64) {
    use std::fmt::Write;
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// `lowrouter-usage-2026-11-01-to-2026-11-30.csv`, `lowrouter-usage-2026-11-30.csv` for one
/// day, `lowrouter-usage-until-2026-11-30.csv` without a start (everything so far); the other
/// filters go before the period (`lowrouter-usage-key-prod-server-status-ok-….csv`), so two
/// exports of one period never share a name. The dates were parsed (`parse_filter`), so they
/// hold only digits and hyphens; other values are reduced to `[A-Za-z0-9._-]`.
fn csv_filename(input: &FilterInput, now: i64) -> String {
    let to = if input.to.is_empty() {
        time_util::format_date(now)
    } else {
        input.to.clone()
    };
    let period = match input.from.as_str() {
        "" => format!("until-{to}"),
        f if f == to => to,
        f => format!("{f}-to-{to}"),
    };
    let mut name = String::from("lowrouter-usage-");
    for (label, value) in [
        ("key", &input.key),
        ("key", &input.key_id),
        ("model", &input.model),
        ("provider", &input.provider),
        ("region", &input.region),
        ("status", &input.status),
    ] {
        let value: String = value
            .chars()
            .map(|c| match c {
                'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
                _ => '-',
            })
            .take(40)
            .collect();
        let value = value.trim_matches(['-', '.']);
        if !value.is_empty() {
            name.push_str(label);
            name.push('-');
            name.push_str(value);
            name.push('-');
        }
    }
    name.push_str(&period);
    name.push_str(".csv");
    name
}

/// Streams exactly the filtered rows as CSV, page by page: memory stays flat at any size.
pub async fn export_csv(
    state: web::Data<AppState>,
    user: Dashboard,
    query: web::Query<HashMap<String, String>>,
) -> WebResult<HttpResponse> {
    let (input, filter, _, errors) = parse_filter(&query);
    if !errors.is_empty() {
        return Err(super::error::WebError::BadRequest(errors.join(" ")));
    }
    let filename = csv_filename(&input, time_util::now_ms());
    let pages = state.store.stream_usage(user.workspace(), filter);
    csv_download(&filename, &CSV_HEADER, pages, csv_page)
}

/// A CSV download streamed from a store's pages (`store::pages`): the header row, then each
/// page as `format` writes it (one buffer per page), `no-store`. A page the store fails to
/// read ends the body with an error (logged): the client sees a broken download, never a
/// short file that looks complete.
pub(super) fn csv_download<T: Send + 'static>(
    filename: &str,
    header: &[&str],
    pages: futures_util::stream::BoxStream<'static, crate::store::Result<Vec<T>>>,
    format: impl Fn(&[T]) -> web::Bytes + Send + 'static,
) -> WebResult<HttpResponse> {
    let mut w = csv_writer(256);
    w.write_record(header)
        .map_err(super::error::WebError::internal)?;
    let header_row = csv_finish(w).map_err(super::error::WebError::internal)?;
    let rows = pages.map(move |page| {
        page.map(|rows| format(&rows)).map_err(|e| {
            tracing::error!(error = %e, "CSV export failed");
            actix_web::error::ErrorInternalServerError(e)
        })
    });
    let body = futures_util::stream::once(async move { Ok::<_, actix_web::Error>(header_row) })
        .chain(rows);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_the_filters_and_nothing_a_header_could_break_on() {
        let day = 1_764_201_785_123; // 2025-11-27
        let mut f = FilterInput::default();
        assert_eq!(
            csv_filename(&f, day),
            "lowrouter-usage-until-2025-11-27.csv"
        );
        f.from = "2025-11-01".into();
        f.to = "2025-11-30".into();
        f.key = "prod server \"x\"/..\r\n".into();
        f.status = "upstream_error".into();
        assert_eq!(
            csv_filename(&f, day),
            "lowrouter-usage-key-prod-server--x-status-upstream_error-2025-11-01-to-2025-11-30.csv"
        );
    }

    #[test]
    fn csv_times_match_the_pages() {
        for ms in [
            0,
            951_782_400_000,
            1_709_164_799_999,
            1_764_201_785_123,
            4_102_444_800_000,
            253_402_300_799_000,
        ] {
            let mut s = String::new();
            utc_second(&mut s, ms);
            assert_eq!(s, time_util::format_rfc3339(ms), "{ms}");
        }
    }
}
