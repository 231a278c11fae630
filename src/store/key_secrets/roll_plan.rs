//! The roll policy: what a Roll does to a key's secrets, apart from its SQL
//! (`Store::roll_keys`), so it is tested without a database.

use super::{Retirement, SecretRow};

/// What a Roll does to a key's unretired secrets (the policy of [`Store::roll_keys`], apart
/// from its SQL so it can be tested alone). At most two secrets stay live: a pending
/// previous secret retires now, unless the current one never served a request (a roll
/// repeated because its reveal was lost): then that unused current secret is the one
/// replaced, and the previous one, still deployed, keeps its schedule.
#[derive(Debug, PartialEq, Eq)]
pub struct RollPlan {
    /// Retired now.
    pub retire_now: Option<i64>,
    /// The current secret, now the previous one (on the chosen schedule).
    pub demote: Option<i64>,
    /// Other unretired previous rows (retired by time, quarantined): stamped retired.
    pub stamp: Vec<i64>,
}

impl RollPlan {
    pub fn of(secrets: &[SecretRow], now: i64) -> RollPlan {
        let current = secrets.iter().find(|s| s.is_current());
        let pending = secrets.iter().find(|s| !s.is_current() && s.is_live(now));
        let unused_current =
            current.is_some_and(|c| c.last_used_at.is_none() && c.quarantined_at.is_none());
        let (retire_now, demote) = match (pending, unused_current) {
            (Some(_), true) => (current.map(|c| c.id), None),
            (p, _) => (p.map(|p| p.id), current.map(|c| c.id)),
        };
        let stamp = secrets
            .iter()
            .filter(|s| !s.is_current() && Some(s.id) != pending.map(|p| p.id))
            .map(|s| s.id)
            .collect();
        RollPlan {
            retire_now,
            demote,
            stamp,
        }
    }
}

/// The schedule of a demoted current secret: (retires_at, quiet_ms, retired_at). A
/// quarantined (leaked) one retires at once, whatever was asked.
pub fn demoted_schedule(
    retire: Retirement,
    quarantined: bool,
    now: i64,
) -> (Option<i64>, Option<i64>, Option<i64>) {
    match retire {
        _ if quarantined => (None, None, Some(now)),
        Retirement::WhenQuiet {
            quiet_ms,
            deadline_ms,
        } => (Some(deadline_ms), Some(quiet_ms), None),
        Retirement::At(t) if t > now => (Some(t), None, None),
        Retirement::At(_) | Retirement::Now => (None, None, Some(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::KeyId;

    fn secret(id: i64, rolled_at: Option<i64>, last_used_at: Option<i64>) -> SecretRow {
        SecretRow {
            id,
            key_id: KeyId(1),
            token_prefix: "lr-sk-Ab3d".into(),
            token_last4: "x9Qz".into(),
            created_at: 0,
            rolled_at,
            retires_at: rolled_at.map(|r| r + 86_400_000),
            quiet_ms: None,
            retired_at: None,
            quarantined_at: None,
            quarantine_url: None,
            last_used_at,
            last_client: None,
        }
    }

    #[test]
    fn a_first_roll_demotes_the_current_secret() {
        let plan = RollPlan::of(&[secret(1, None, Some(5))], 10);
        assert_eq!(
            plan,
            RollPlan {
                retire_now: None,
                demote: Some(1),
                stamp: vec![]
            }
        );
    }

    #[test]
    fn a_second_roll_retires_the_pending_previous_secret() {
        let plan = RollPlan::of(&[secret(1, Some(5), Some(6)), secret(2, None, Some(8))], 10);
        assert_eq!(plan.retire_now, Some(1));
        assert_eq!(plan.demote, Some(2));
    }

    #[test]
    fn a_repeated_roll_replaces_the_unused_new_secret_and_keeps_the_deployed_one() {
        // Secret 2 was made by a roll whose reveal was lost: it never served a request.
        let plan = RollPlan::of(&[secret(1, Some(5), Some(6)), secret(2, None, None)], 10);
        assert_eq!(plan.retire_now, Some(2), "the unused one goes");
        assert_eq!(
            plan.demote, None,
            "the deployed previous one keeps its schedule"
        );
    }

    #[test]
    fn a_leaked_secret_retires_at_once_whatever_was_asked() {
        let quiet = Retirement::WhenQuiet {
            quiet_ms: 60_000,
            deadline_ms: 1_000_000,
        };
        assert_eq!(demoted_schedule(quiet, true, 10), (None, None, Some(10)));
        assert_eq!(
            demoted_schedule(quiet, false, 10),
            (Some(1_000_000), Some(60_000), None)
        );
        assert_eq!(
            demoted_schedule(Retirement::At(5), false, 10),
            (None, None, Some(10)),
            "a time already past is now"
        );
        assert_eq!(
            demoted_schedule(Retirement::At(50), false, 10),
            (Some(50), None, None)
        );
    }
}
