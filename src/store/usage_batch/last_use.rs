//! PostgreSQL: last uses written when due, not in every batch ([`LAST_USE_EVERY_MS`]).

use std::collections::HashMap;

use super::BatchPlan;

/// PostgreSQL: a key's and a secret's last use is written at most once per this long by a
/// process. With budget leases a batch's charge goes to the account and the lease; the key
/// and secret rows were updated by every batch for their last use alone, two hot-row updates
/// per group commit (hundreds a second under load, each a new row version and a lock other
/// processes' batches queue on). Last use is for people and for "retire when quiet" /
/// "disable when unused", measured in minutes and days: a second of lag changes neither.
pub const LAST_USE_EVERY_MS: i64 = 1_000;

/// What this process last wrote as each key's and secret's last use ([`LAST_USE_EVERY_MS`]).
/// Kept by the PostgreSQL group-commit writer, the one task that writes usage batches.
#[derive(Debug, Default)]
pub struct LastUseWrites {
    keys: HashMap<i64, i64>,
    secrets: HashMap<i64, i64>,
}

/// Entries beyond which the map starts over (it only saves writes; forgetting costs one).
const LAST_USE_REMEMBERED: usize = 100_000;

impl LastUseWrites {
    /// Drops from the plan the last-use updates that are not due: a key whose settlement
    /// is only its last use (`day == -1`), a secret, each within [`LAST_USE_EVERY_MS`] of
    /// what was last written for it.
    pub(super) fn prune(&self, plan: &mut BatchPlan<'_>) {
        let due = |written: &HashMap<i64, i64>, id: i64, at: i64| {
            written
                .get(&id)
                .is_none_or(|w| at >= w.saturating_add(LAST_USE_EVERY_MS))
        };
        plan.keys
            .retain(|(id, day, _), d| *day != -1 || due(&self.keys, *id, d.last_used));
        plan.secrets
            .retain(|id, (at, _)| due(&self.secrets, *id, *at));
    }

    /// Notes what a committed plan wrote.
    pub(super) fn written(&mut self, plan: &BatchPlan<'_>) {
        if self.keys.len() + self.secrets.len() > LAST_USE_REMEMBERED {
            *self = LastUseWrites::default();
        }
        for ((id, _, _), d) in &plan.keys {
            self.keys.insert(*id, d.last_used);
        }
        for (id, (at, _)) in &plan.secrets {
            self.secrets.insert(*id, *at);
        }
    }
}
