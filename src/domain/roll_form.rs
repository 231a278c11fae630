//! The Roll form: how the previous secret retires, parsed into a [`Retirement`].

/// How a roll retires the previous secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    /// Once it served no request for `quiet_ms` (counted from the roll), or at the deadline.
    WhenQuiet {
        quiet_ms: i64,
        deadline_ms: i64,
    },
    /// At this instant (unix ms).
    At(i64),
    Now,
}

impl Retirement {
    /// For the audit log: how the previous secret retires.
    pub fn describe(&self) -> String {
        match self {
            Retirement::WhenQuiet {
                quiet_ms,
                deadline_ms,
            } => format!(
                "when quiet for {} min, at the latest {}",
                quiet_ms / 60_000,
                super::time_util::format_rfc3339(*deadline_ms)
            ),
            Retirement::At(t) => format!("at {}", super::time_util::format_rfc3339(*t)),
            Retirement::Now => "now".into(),
        }
    }
}

/// Quiet period when the form leaves it empty: 60 minutes.
pub const DEFAULT_QUIET_MINUTES: &str = "60";
/// Deadline of a "when quiet" retirement when the form leaves it empty: 7 days.
pub const DEFAULT_DEADLINE_DAYS: &str = "7";
/// Quiet periods and deadlines are at most this long: 90 days.
const MAX_MS: i64 = 90 * 86_400_000;

/// The form as typed, for re-display.
#[derive(Debug, Clone, Default)]
pub struct RollFormInput {
    /// `when_quiet`, `at` or `now`.
    pub retire: String,
    /// Minutes, decimals allowed (`0.5` is 30 seconds).
    pub quiet_minutes: String,
    pub deadline_days: String,
    /// `YYYY-MM-DDTHH:MM` (a `datetime-local` input), in UTC.
    pub at: String,
}

impl RollFormInput {
    pub fn defaults() -> Self {
        RollFormInput {
            retire: "when_quiet".into(),
            quiet_minutes: DEFAULT_QUIET_MINUTES.into(),
            deadline_days: DEFAULT_DEADLINE_DAYS.into(),
            at: String::new(),
        }
    }

    /// The retirement chosen, or a message for the person filling in the form.
    pub fn parse(&self, now_ms: i64) -> Result<Retirement, String> {
        match self.retire.as_str() {
            "now" => Ok(Retirement::Now),
            "at" => {
                let at = parse_utc_minute(self.at.trim()).ok_or_else(|| {
                    "Give the time to retire the previous secret as YYYY-MM-DDTHH:MM (UTC)."
                        .to_owned()
                })?;
                if at <= now_ms || at - now_ms > MAX_MS {
                    return Err("The time must be in the future and within 90 days.".into());
                }
                Ok(Retirement::At(at))
            }
            "when_quiet" | "" => {
                let quiet_ms = parse_minutes(or_default(
                    &self.quiet_minutes,
                    DEFAULT_QUIET_MINUTES,
                ))
                .filter(|ms| (600..=MAX_MS).contains(ms))
                .ok_or_else(|| {
                    "The quiet period is a number of minutes from 0.01 to 129600 (90 days), \
                         with at most two decimals."
                        .to_owned()
                })?;
                let days: i64 = or_default(&self.deadline_days, DEFAULT_DEADLINE_DAYS)
                    .parse()
                    .ok()
                    .filter(|d| (1..=90).contains(d))
                    .ok_or_else(|| {
                        "The deadline is a whole number of days from 1 to 90.".to_owned()
                    })?;
                Ok(Retirement::WhenQuiet {
                    quiet_ms,
                    deadline_ms: now_ms.saturating_add(days * 86_400_000),
                })
            }
            _ => Err("Choose when the previous secret retires.".into()),
        }
    }
}

fn or_default<'a>(s: &'a str, default: &'a str) -> &'a str {
    let s = s.trim();
    if s.is_empty() {
        default
    } else {
        s
    }
}

/// `60`, `0.5`, `1.25` minutes -> milliseconds; at most two decimals, ASCII digits only.
fn parse_minutes(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || whole.len() > 6 || frac.len() > 2 {
        return None;
    }
    if !digits(whole) || !digits(frac) {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let hundredths: i64 = format!("{frac:0<2}").parse().ok()?;
    Some((whole * 100 + hundredths) * 600)
}

/// `YYYY-MM-DDTHH:MM` as UTC unix milliseconds.
fn parse_utc_minute(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let date = super::time_util::parse_date(date)?;
    let (h, m) = time.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    let t = time::Time::from_hms(h, m, 0).ok()?;
    Some(super::time_util::to_ms(date.with_time(t).assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(retire: &str, quiet: &str, days: &str, at: &str) -> RollFormInput {
        RollFormInput {
            retire: retire.into(),
            quiet_minutes: quiet.into(),
            deadline_days: days.into(),
            at: at.into(),
        }
    }

    #[test]
    fn when_quiet_defaults_and_small_periods() {
        let now = 1_000_000;
        assert_eq!(
            form("when_quiet", "", "", "").parse(now),
            Ok(Retirement::WhenQuiet {
                quiet_ms: 3_600_000,
                deadline_ms: now + 7 * 86_400_000
            })
        );
        assert!(matches!(
            form("when_quiet", "0.05", "1", "").parse(now),
            Ok(Retirement::WhenQuiet {
                quiet_ms: 3_000,
                ..
            })
        ));
        for bad in ["0", "-1", "1e3", "0.001", "abc", ".", "\u{0}", "999999999"] {
            assert!(
                form("when_quiet", bad, "7", "").parse(now).is_err(),
                "{bad:?}"
            );
        }
        assert!(form("when_quiet", "60", "0", "").parse(now).is_err());
        assert!(form("sometime", "", "", "").parse(now).is_err());
    }

    #[test]
    fn at_a_time_in_the_future() {
        let now = time_util_ms("2026-11-30T12:00");
        assert_eq!(
            form("at", "", "", "2026-12-01T08:30").parse(now),
            Ok(Retirement::At(time_util_ms("2026-12-01T08:30")))
        );
        assert!(form("at", "", "", "2026-11-30T11:00").parse(now).is_err());
        assert!(form("at", "", "", "tomorrow").parse(now).is_err());
        assert_eq!(form("now", "x", "x", "x").parse(now), Ok(Retirement::Now));
    }

    fn time_util_ms(s: &str) -> i64 {
        parse_utc_minute(s).unwrap()
    }
}
