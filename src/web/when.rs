//! A moment as the pages show it: relative words ("3 minutes ago") in a
//! `<time datetime="…" title="…">`, so the exact UTC time is on hover and machine-readable.
//! Templates write `<time datetime="{{ t.iso }}" title="{{ t.exact }}">{{ t.ago }}</time>`.

use crate::domain::time_util;

pub struct When {
    /// `3 minutes ago`, `in 2 days`.
    pub ago: String,
    /// `2026-11-30 12:00:05 UTC`.
    pub exact: String,
    /// `2026-11-30T12:00:05Z`, for `datetime`.
    pub iso: String,
}

impl When {
    pub fn new(now: i64, t: i64) -> Self {
        When {
            ago: time_util::relative(now, t),
            exact: time_util::format_second(t),
            iso: time_util::format_rfc3339(t),
        }
    }

    pub fn maybe(now: i64, t: Option<i64>) -> Option<Self> {
        t.map(|t| When::new(now, t))
    }
}
