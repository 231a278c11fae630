//! A key as the dashboard shows it: scope, spend against limits, last use, the age of its
//! current secret and the rotation markers.

use super::when::When;
use crate::config::Settings;
use crate::domain::{time_util, Credits, ErrorCode, KeyId, UserId};
use crate::store::key_secrets::SecretRow;
use crate::store::keys::{KeyRow, KeyState};
use crate::store::usage::KeyActivity;

/// A key's last refused or failed request, as the Keys pages show it.
pub struct RefusalView {
    pub when: When,
    /// `401 · Key disabled`.
    pub status: String,
    /// Its usage detail page.
    pub generation_id: String,
}

/// A key as the pages show it: never more of the token than prefix and last four.
pub struct KeyView {
    pub id: KeyId,
    pub name: String,
    pub masked: String,
    pub models: String,
    pub region: String,
    /// "60 requests/min · 4 at once", or None without rate limits.
    pub rate: Option<String>,
    /// "Disables after N days unused", with the day it would (see `KeyRow::idle_until`).
    pub idle_rule: Option<String>,
    pub expires: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub created: String,
    /// Today's and this month's spend, each against its limit.
    pub spend: [SpendView; 2],
    pub limit_badge: Option<LimitBadge>,
    pub disabled: bool,
    /// The last served request's time, for a `<time>` element; None when never used.
    pub last_used_at: Option<When>,
    last_used_at_ms: Option<i64>,
    /// How old the current secret is (`12 days`), when known.
    pub age: Option<String>,
    /// The current secret is older than `rotate_after_days`.
    pub rotate: bool,
    /// No request for `unused_after_days` (or never, and created that long ago).
    pub unused: bool,
    /// A pending previous secret: its masked form.
    pub previous: Option<String>,
    /// A secret of this key was reported as leaked and is not retired yet.
    pub leaked: bool,
    /// The key expires within 7 days.
    pub expiring: bool,
    /// The model of the key's last served request (set by the pages that read it).
    pub last_model: Option<String>,
    /// The key's last refused or failed request (set with the last model).
    pub last_refusal: Option<RefusalView>,
    /// Where the last request came from, coarsened (`203.0.113.0/24 · curl`).
    pub last_client: Option<String>,
    /// Who created it (what a developer may change: `web::Can::change_key`).
    pub created_by: Option<UserId>,
}
/// Spend of one period against its limit: "0.008 of 0.01 today" and a meter.
pub struct SpendView {
    pub spent: String,
    pub limit: Option<String>,
    pub period: &'static str,
    pub no_limit: &'static str,
    /// The meter's scale, in micro-credits.
    pub max: i64,
    pub value: i64,
    pub low: i64,
    pub high: i64,
}

impl SpendView {
    fn new(
        spent: Credits,
        limit: Option<Credits>,
        period: &'static str,
        no_limit: &'static str,
    ) -> Self {
        let max = limit.map_or(0, Credits::micros).max(1);
        SpendView {
            spent: spent.display(),
            limit: limit.map(Credits::display),
            period,
            no_limit,
            max,
            value: spent.micros().min(max),
            low: max / 2,
            high: max / 10 * 8,
        }
    }
}

/// A badge beside a key that a limit stops, or soon will.
pub struct LimitBadge {
    pub text: String,
    pub class: &'static str,
    /// The key is refusing requests for its limit: the badge links to Edit (raise it).
    pub blocking: bool,
}

fn limit_badge(k: &KeyRow, now: i64) -> Option<LimitBadge> {
    let reached = |limit: Option<Credits>, spent: Credits| limit.is_some_and(|l| spent >= l);
    if reached(k.daily_limit, k.spent_today(now)) {
        return Some(LimitBadge {
            text: "Limit reached until 00:00 UTC".into(),
            class: "bad",
            blocking: true,
        });
    }
    if reached(k.monthly_limit, k.spent_this_month(now)) {
        let reset = time_util::next_month_start_ms(now);
        return Some(LimitBadge {
            text: format!(
                "Monthly limit reached until {} 00:00 UTC",
                time_util::format_date(reset)
            ),
            class: "bad",
            blocking: true,
        });
    }
    // 80% or more of a limit used: the next requests may be refused.
    let share = |limit: Option<Credits>, spent: Credits| {
        limit.filter(|l| l.micros() > 0).map_or(0, |l| {
            (i128::from(spent.micros()) * 100 / i128::from(l.micros())) as i64
        })
    };
    let day = share(k.daily_limit, k.spent_today(now));
    let month = share(k.monthly_limit, k.spent_this_month(now));
    let (pct, what) = if day >= month {
        (day, "daily")
    } else {
        (month, "monthly")
    };
    (pct >= 80).then(|| LimitBadge {
        text: format!("{pct}% of {what} limit used"),
        class: "warn",
        blocking: false,
    })
}

fn rate_text(k: &KeyRow) -> Option<String> {
    let parts: Vec<String> = [
        k.rpm_limit.map(|n| format!("{n} requests/min")),
        k.concurrency_limit.map(|n| format!("{n} at once")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

impl KeyView {
    pub fn new(k: &KeyRow, now: i64) -> Self {
        let state = k.state(now);
        KeyView {
            id: k.id,
            created_by: k.created_by,
            name: k.name.clone(),
            masked: k.masked(),
            models: if k.models.is_all() {
                "All models".into()
            } else {
                k.models.iter().collect::<Vec<_>>().join(", ")
            },
            region: k.region.clone().unwrap_or_else(|| "Any".into()),
            rate: rate_text(k),
            idle_rule: k.disable_after_days.zip(k.idle_until()).map(|(days, at)| {
                let unit = if days == 1 { "day" } else { "days" };
                format!(
                    "Disables after {days} {unit} unused (on {})",
                    time_util::format_date(at)
                )
            }),
            expires: k
                .expires_on()
                .map_or_else(|| "Never".into(), |d| d.to_string()),
            state: state.label(),
            state_class: match state {
                KeyState::Active => "ok",
                KeyState::Disabled | KeyState::Idle => "muted",
                KeyState::Expired => "warn",
                KeyState::Revoked => "bad",
            },
            created: time_util::format_date(k.created_at),
            spend: [
                SpendView::new(k.spent_today(now), k.daily_limit, "today", "No daily limit"),
                SpendView::new(
                    k.spent_this_month(now),
                    k.monthly_limit,
                    "this month",
                    "No monthly limit",
                ),
            ],
            limit_badge: limit_badge(k, now),
            disabled: matches!(state, KeyState::Disabled | KeyState::Idle),
            last_used_at: When::maybe(now, k.last_used_at),
            last_used_at_ms: k.last_used_at,
            age: None,
            rotate: false,
            unused: false,
            previous: None,
            leaked: false,
            expiring: state == KeyState::Active
                && k.expires_at.is_some_and(|e| e - now <= 7 * 86_400_000),
            last_model: None,
            last_refusal: None,
            last_client: None,
        }
    }

    /// Adds the key's recent traffic (`Store::key_activity`): the last served request's
    /// model, the last refusal, and whether a limit is refusing requests now (spend can
    /// stop short of the limit while every request's hold exceeds what is left).
    pub fn with_activity(mut self, activity: Option<&KeyActivity>, now: i64) -> Self {
        let Some(a) = activity else { return self };
        self.last_model = a.last_model.clone();
        let Some(r) = &a.last_refusal else {
            return self;
        };
        let after_success = self.last_used_at_ms.is_none_or(|served| r.at > served);
        if after_success && self.limit_badge.as_ref().is_none_or(|b| !b.blocking) {
            let until = match r.code.as_deref().and_then(ErrorCode::parse) {
                Some(ErrorCode::DailyLimitReached)
                    if time_util::day_number(r.at) == time_util::day_number(now) =>
                {
                    Some("00:00 UTC".to_owned())
                }
                Some(ErrorCode::MonthlyLimitReached)
                    if time_util::month_number(r.at) == time_util::month_number(now) =>
                {
                    Some(format!(
                        "{} 00:00 UTC",
                        time_util::format_date(time_util::next_month_start_ms(now))
                    ))
                }
                _ => None,
            };
            if let Some(until) = until {
                self.limit_badge = Some(LimitBadge {
                    text: format!("Limit reached: refused until {until}"),
                    class: "bad",
                    blocking: true,
                });
            }
        }
        self.last_refusal = Some(RefusalView {
            when: When::new(now, r.at),
            status: crate::domain::reasons::status_line(r.http_status, r.code.as_deref()),
            generation_id: r.generation_id.clone(),
        });
        self
    }

    /// Adds what the key's secrets (any of the account's, filtered here) tell: the current
    /// secret's age and the markers of `rotate_after_days` and `unused_after_days` (no
    /// request since that long, or never and created that long ago).
    pub fn with_secrets(
        mut self,
        k: &KeyRow,
        secrets: &[SecretRow],
        settings: &Settings,
        now: i64,
    ) -> Self {
        const DAY: i64 = 86_400_000;
        let since = k.last_used_at.unwrap_or(k.created_at);
        self.unused = now - since >= i64::from(settings.unused_after_days) * DAY;
        let mine = || secrets.iter().filter(|s| s.key_id == self.id);
        if let Some(current) = mine().find(|s| s.is_current()) {
            let days = (now - current.created_at).max(0) / DAY;
            self.age = Some(format!("{days} day{}", if days == 1 { "" } else { "s" }));
            self.rotate = days >= i64::from(settings.rotate_after_days);
        }
        self.previous = mine()
            .find(|s| !s.is_current() && s.is_live(now))
            .map(SecretRow::masked);
        self.leaked = mine().any(|s| s.quarantined_at.is_some());
        self.last_client = mine()
            .filter(|s| s.last_used_at.is_some())
            .max_by_key(|s| s.last_used_at)
            .and_then(|s| s.last_client.clone());
        self
    }
}
