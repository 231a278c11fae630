//! A usage entry for the write path's and the journal's tests.

use super::{NewUsage, UsageEntry, UsageStatus};
use crate::domain::ids::{KeyId, WorkspaceId};
use crate::store::ledger::{HoldSource, Reservation};

/// A successful request's entry with an in-memory hold (settling it charges the cost), for
/// the write path's tests.
pub(crate) fn sample_entry(id: &str, account_id: i64, key_id: i64) -> UsageEntry {
    use crate::domain::{time_util, Credits};
    let now = time_util::now_ms();
    UsageEntry {
        usage: NewUsage {
            generation_id: id.into(),
            account_id: WorkspaceId(account_id),
            key_id: KeyId(key_id),
            key_name: "local-dev".into(),
            requested_model: "lowrouter/echo".into(),
            resolved_model: Some("lowrouter/echo".into()),
            provider: Some("lowrouter".into()),
            region: None,
            prompt_tokens: 10,
            completion_tokens: 5,
            cost: Credits::from_micros(1_000),
            status: UsageStatus::Ok,
            http_status: 200,
            error_code: None,
            streamed: false,
            latency_ms: 1,
            started_at: now,
            completed_at: now,
            secret_id: Some(key_id),
            secret_last4: Some("x9Qz".into()),
            client: Some("127.0.0.0/24 · curl".into()),
        },
        reservation: Some(Reservation {
            account_id: WorkspaceId(account_id),
            key_id: KeyId(key_id),
            amount: Credits::from_micros(5_000),
            day: time_util::day_number(now),
            month: time_util::month_number(now),
            source: HoldSource::Memory,
        }),
    }
}
