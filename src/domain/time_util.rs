//! Time is UTC everywhere. The database stores instants as unix milliseconds (BIGINT), which
//! both backends index and compare the same way; conversion happens here only.

use time::{Date, Month, OffsetDateTime, Time};

pub fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Days since the unix epoch: the bucket of daily limits.
pub fn day_number(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// Months since year 0: the bucket of monthly limits.
pub fn month_number(ms: i64) -> i64 {
    let d = from_ms(ms);
    i64::from(d.year()) * 12 + i64::from(u8::from(d.month())) - 1
}

/// Start of the next UTC day, in ms: when a daily limit resets.
pub fn next_day_start_ms(ms: i64) -> i64 {
    (day_number(ms) + 1) * 86_400_000
}

/// Start of the next UTC month, in ms: when a monthly limit resets.
pub fn next_month_start_ms(ms: i64) -> i64 {
    let d = from_ms(ms).date();
    let (y, m) = if d.month() == Month::December {
        (d.year() + 1, Month::January)
    } else {
        (d.year(), d.month().next())
    };
    let start = Date::from_calendar_date(y, m, 1).expect("first of month exists");
    to_ms(start.with_time(Time::MIDNIGHT).assume_utc())
}

pub fn date_start_ms(d: Date) -> i64 {
    to_ms(d.with_time(Time::MIDNIGHT).assume_utc())
}

/// `2026-11-27 14:03 UTC`
pub fn format_minute(ms: i64) -> String {
    let d = from_ms(ms);
    format!("{} {:02}:{:02} UTC", d.date(), d.hour(), d.minute())
}

/// `3 minutes ago`, `in 2 hours`: `t` relative to `now`, in its largest whole unit.
pub fn relative(now: i64, t: i64) -> String {
    let d = (now - t).unsigned_abs() / 1000;
    if d < 60 {
        return if t <= now {
            "just now"
        } else {
            "in under a minute"
        }
        .into();
    }
    let (n, unit) = match d {
        d if d < 3600 => (d / 60, "minute"),
        d if d < 86_400 => (d / 3600, "hour"),
        d => (d / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if t <= now {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

pub fn format_second(ms: i64) -> String {
    let d = from_ms(ms);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        d.date(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

/// RFC 3339 in UTC with a `Z` (`2026-11-30T08:35:10Z`), for JSON: what `datetime.fromisoformat`,
/// `Date.parse` and every JSON client read.
pub fn format_rfc3339(ms: i64) -> String {
    let d = from_ms(ms);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        d.date(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

pub fn format_date(ms: i64) -> String {
    from_ms(ms).date().to_string()
}

/// Parses `YYYY-MM-DD` (the value of an `<input type=date>`).
pub fn parse_date(s: &str) -> Option<Date> {
    Date::parse(
        s.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let t = to_ms(time::macros::datetime!(2026-12-31 23:59:59 UTC));
        assert_eq!(
            next_day_start_ms(t),
            to_ms(time::macros::datetime!(2027-01-01 0:00 UTC))
        );
        assert_eq!(
            next_month_start_ms(t),
            to_ms(time::macros::datetime!(2027-01-01 0:00 UTC))
        );
        assert_eq!(month_number(t) + 1, month_number(next_month_start_ms(t)));
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(format_minute(t), "2026-12-31 23:59 UTC");
    }
}
