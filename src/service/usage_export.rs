//! The usage export of a period for accounting ("export, then let retention remove"): every
//! raw row, oldest first, as NDJSON or CSV, shared by `GET /api/v1/usage/export` and
//! `lowrouter usage export`. A cut transfer resumes with `after=<id of the last row>`.

use serde::Serialize;

use crate::domain::time_util;
use crate::domain::Credits;
use crate::store::usage::{ExportCells, ExportRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Ndjson,
    /// RFC 4180, a header line first (not repeated when resuming), text cells defused
    /// against spreadsheet formulas.
    Csv,
}

impl ExportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ndjson" | "" => Some(ExportFormat::Ndjson),
            "csv" => Some(ExportFormat::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// One exported row. Money is a decimal string of credits with six places (exact).
#[derive(Debug, Serialize)]
pub struct ExportedRow<'a> {
    pub id: &'a str,
    pub started_at: String,
    pub completed_at: String,
    pub key_name: &'a str,
    pub requested_model: &'a str,
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub region: Option<&'a str>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost: String,
    pub status: &'a str,
    pub http_status: i64,
    pub error_code: Option<&'a str>,
    pub streamed: bool,
    pub latency_ms: i64,
}

impl<'a> ExportedRow<'a> {
    /// From a row's cells as the store joins them (`ExportCells`: text the database wrote,
    /// numbers included, read back here; an empty cell is an absent value).
    fn of(r: &ExportRow, c: &'a ExportCells<'a>) -> Self {
        let int = |i: usize| c[i].parse::<i64>().unwrap_or_default();
        let opt = |i: usize| Some(c[i].as_ref()).filter(|s| !s.is_empty());
        ExportedRow {
            id: &c[0],
            started_at: time_util::format_rfc3339(r.started_at),
            completed_at: time_util::format_rfc3339(r.completed_at),
            key_name: &c[1],
            requested_model: &c[2],
            model: opt(3),
            provider: opt(4),
            region: opt(5),
            prompt_tokens: int(6),
            completion_tokens: int(7),
            total_tokens: int(8),
            cost: Credits::from_micros(int(9)).exact(),
            status: &c[11],
            http_status: int(12),
            error_code: opt(13),
            streamed: int(17) != 0,
            latency_ms: int(10),
        }
    }
}

/// Spreadsheets execute cells starting with these; such text cells get a leading `'`.
const FORMULA_PREFIXES: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell made safe to open in a spreadsheet.
pub fn defuse(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(FORMULA_PREFIXES) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

/// A page of rows in `format`, with the CSV header first when `header`.
pub fn encode(rows: &[ExportRow], format: ExportFormat, header: bool) -> Vec<u8> {
    // The store re-reads any row whose cells it cannot split, so none is ever skipped.
    let cells: Vec<(&ExportRow, ExportCells<'_>)> = rows
        .iter()
        .filter_map(|r| r.cells().map(|c| (r, c)))
        .collect();
    match format {
        ExportFormat::Ndjson => {
            let mut out = Vec::with_capacity(rows.len() * 400);
            for (r, c) in &cells {
                // A struct of strings and numbers: serializing cannot fail.
                if serde_json::to_writer(&mut out, &ExportedRow::of(r, c)).is_ok() {
                    out.push(b'\n');
                }
            }
            out
        }
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(header)
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::with_capacity(rows.len() * 250));
            for (r, c) in &cells {
                let mut row = ExportedRow::of(r, c);
                let (name, asked) = (defuse(row.key_name), defuse(row.requested_model));
                row.key_name = &name;
                row.requested_model = &asked;
                let _ = w.serialize(&row);
            }
            w.into_inner().unwrap_or_default()
        }
    }
}

/// `start` or `end` of a period: a UTC date (`2026-11-01`, its midnight) or unix seconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000).filter(|ms| *ms >= 0);
    }
    time_util::parse_date(s).map(time_util::date_start_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_dates_or_unix_seconds() {
        assert_eq!(parse_instant("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_instant(" 86400 "), Some(86_400_000));
        assert_eq!(parse_instant("-5"), None);
        assert_eq!(parse_instant("9223372036854775807"), None);
        assert_eq!(parse_instant("yesterday"), None);
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(defuse("=1+1"), "'=1+1");
        assert_eq!(defuse("prod"), "prod");
    }
}
