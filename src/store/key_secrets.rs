//! SQL for `key_secrets`: the secrets of a key (the current one and, during a rotation, the
//! previous one), their retirement and quarantine, and the banner of leaked secrets.
//!
//! Every secret is a row here (migration 0011); `api_keys` keeps the current secret's hash,
//! prefix and last four as well, updated in the same transaction as the roll. The gateway
//! reads the secret by hash joined with its key (`keys::GATEWAY_KEY_SQL`), so retiring or
//! quarantining is one committed row change that the next request of any process sees.
//!
//! A previous secret retires *when quiet* (`quiet_ms` without a request, counted from the
//! roll, or at the deadline `retires_at`), *at* `retires_at`, or *now* (`retired_at`).
//! Whether it is retired is computed from the row at the moment of the request
//! ([`Lifecycle::retired_at`]); the first request that finds it retired stamps `retired_at`
//! ([`Store::stamp_retired`]), so a usage batch that later advances `last_used_at` (a request
//! that started before the retirement) cannot bring it back.

use crate::domain::ids::{KeyId, WorkspaceId};
use sqlx::FromRow;

use super::audit::{insert_audit, AuditEvent};
use super::management_keys::{roll_management_key_in, ManagementKeyRow};
use super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::public_id::ManagementKeyPublicId;
pub use crate::domain::roll_form::Retirement;
use crate::domain::time_util;
use crate::domain::token::{masked, ApiToken, ManagementToken, TokenHash};

/// What decides whether a secret still works.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    pub rolled_at: Option<i64>,
    pub retires_at: Option<i64>,
    pub quiet_ms: Option<i64>,
    pub retired_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl Lifecycle {
    /// When the secret retired, if it has by `now`. The current secret (never rolled) does
    /// not retire.
    pub fn retired_at(&self, now: i64) -> Option<i64> {
        if let Some(t) = self.retired_at {
            return Some(t);
        }
        self.rolled_at?;
        let due = self.due()?;
        (now >= due).then_some(due)
    }

    /// When a pending previous secret will retire, as things stand (a request before then
    /// pushes a quiet retirement back).
    pub fn due(&self) -> Option<i64> {
        let rolled = self.rolled_at?;
        let quiet = self
            .quiet_ms
            .map(|q| rolled.max(self.last_used_at.unwrap_or(0)).saturating_add(q));
        match (self.retires_at, quiet) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A secret as the key page shows it (never more than prefix and last four).
#[derive(Debug, Clone, FromRow)]
pub struct SecretRow {
    pub id: i64,
    pub key_id: KeyId,
    pub token_prefix: String,
    pub token_last4: String,
    pub created_at: i64,
    pub rolled_at: Option<i64>,
    pub retires_at: Option<i64>,
    pub quiet_ms: Option<i64>,
    pub retired_at: Option<i64>,
    pub quarantined_at: Option<i64>,
    pub quarantine_url: Option<String>,
    pub last_used_at: Option<i64>,
    pub last_client: Option<String>,
}

impl SecretRow {
    pub fn masked(&self) -> String {
        masked(&self.token_prefix, &self.token_last4)
    }

    pub fn life(&self) -> Lifecycle {
        Lifecycle {
            rolled_at: self.rolled_at,
            retires_at: self.retires_at,
            quiet_ms: self.quiet_ms,
            retired_at: self.retired_at,
            last_used_at: self.last_used_at,
        }
    }

    pub fn is_current(&self) -> bool {
        self.rolled_at.is_none()
    }

    /// Works at `now`: not retired, not quarantined.
    pub fn is_live(&self, now: i64) -> bool {
        self.quarantined_at.is_none() && self.life().retired_at(now).is_none()
    }
}

mod previous;
mod roll_plan;
pub use roll_plan::{demoted_schedule, RollPlan};

const SECRET_COLUMNS: &str = "id, key_id, token_prefix, token_last4, created_at, rolled_at, \
    retires_at, quiet_ms, retired_at, quarantined_at, quarantine_url, last_used_at, last_client";

/// A quarantined secret of a live key that is not retired yet: the dashboard's banner.
#[derive(Debug, Clone, FromRow)]
pub struct LeakedSecret {
    pub key_id: KeyId,
    pub name: String,
    pub token_prefix: String,
    pub token_last4: String,
    pub quarantine_url: Option<String>,
    pub quarantined_at: i64,
}

/// What a leak report found for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakVerdict {
    /// A live secret of ours: quarantined now (or already).
    Live,
    /// Unknown, revoked or retired.
    NotLive,
}

pub(crate) const INSERT_SECRET: &str = "insert into key_secrets \
    (key_id, token_hash, token_prefix, token_last4, created_at, created_by) values ($1, $2, $3, $4, $5, $6)";

impl Store {
    /// How a usage row's secret (`key_id`, its last four) is shown: `lr-sk-Ab3d…x9Qz`, from
    /// the secret's row, retired ones included; None when no secret of this account's key
    /// ends so (the last four alone is then shown).
    pub async fn secret_display(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        last4: &str,
    ) -> Result<Option<String>> {
        let found: Option<(String, String)> = on_read!(self, pool => {
            sqlx::query_as(
                "select s.token_prefix, s.token_last4 from key_secrets s join api_keys k on k.id = s.key_id \
                 where s.key_id = $1 and k.account_id = $2 and s.token_last4 = $3 order by s.id desc limit 1",
            )
            .bind(key_id)
            .bind(account_id)
            .bind(last4)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.map(|(prefix, last4)| masked(&prefix, &last4)))
    }

    /// The key's secrets that matter to its owner: the current one and the previous one if
    /// it is not retired yet (quarantined ones included), current first.
    pub async fn key_secrets(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
    ) -> Result<Vec<SecretRow>> {
        let sql = format!(
            "select {SECRET_COLUMNS} from key_secrets where key_id = $1 and retired_at is null \
             and exists (select 1 from api_keys k where k.id = $1 and k.account_id = $2) \
             order by (case when rolled_at is null then 0 else 1 end), id desc"
        );
        let now = time_util::now_ms();
        let rows: Vec<SecretRow> = on_read!(self, pool => {
            sqlx::query_as(&sql).bind(key_id).bind(account_id).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .filter(|s| s.is_current() || s.life().retired_at(now).is_none())
            .collect())
    }

    /// The unretired secrets of every live key of the account (the Keys page).
    pub async fn account_secrets(&self, account_id: WorkspaceId) -> Result<Vec<SecretRow>> {
        let sql = format!(
            "select s.{} from key_secrets s join api_keys k on k.id = s.key_id \
             where k.account_id = $1 and k.status <> 'revoked' and s.retired_at is null",
            SECRET_COLUMNS.replace(", ", ", s.")
        );
        Ok(on_read!(self, pool => {
            sqlx::query_as(&sql).bind(account_id).fetch_all(pool).await?
        }))
    }

    /// Gives the key a new secret (see [`Retirement`]); one transaction that locks the key
    /// row first (as every transaction does), so concurrent rolls of a key run one after the
    /// other. At most two secrets stay live: a pending previous secret retires now, unless
    /// the current secret never served a request (a roll repeated because its reveal was
    /// lost, or a double submit): then that unused secret is the one replaced and the
    /// previous one, still deployed, keeps its schedule. So a repeated roll never retires the
    /// secret that is serving traffic. `NotFound` for a revoked key or another account's.
    pub async fn roll_key(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        token: &ApiToken,
        retire: Retirement,
        actor: &Actor,
    ) -> Result<()> {
        self.roll_keys(account_id, &[(key_id, token)], &[], retire, actor)
            .await
            .map(drop)
    }

    /// [`Store::roll_key`] for several keys, and new tokens for the management keys in
    /// `management`, in one transaction (Roll all): every key gets its new secret, or none
    /// does, so no new secret is made that is never shown. A management key revoked
    /// meanwhile is skipped (there is nothing to roll); the rolled ones come back in order.
    pub async fn roll_keys(
        &self,
        account_id: WorkspaceId,
        rolls: &[(KeyId, &ApiToken)],
        management: &[(&ManagementKeyPublicId, &ManagementToken)],
        retire: Retirement,
        actor: &Actor,
    ) -> Result<Vec<(ManagementKeyRow, usize)>> {
        let now = time_util::now_ms();
        let select = format!(
            "select {SECRET_COLUMNS} from key_secrets where key_id = $1 and retired_at is null"
        );
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            for (key_id, token) in rolls {
                let key_id = *key_id;
                let name: String = sqlx::query_scalar(
                    "update api_keys set token_hash = $1, token_prefix = $2, token_last4 = $3 \
                     where id = $4 and account_id = $5 and status <> 'revoked' returning name",
                )
                .bind(&token.hash().0)
                .bind(token.display_prefix())
                .bind(token.last_four())
                .bind(key_id)
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
                let secrets: Vec<SecretRow> = sqlx::query_as(&select).bind(key_id).fetch_all(&mut *tx).await?;
                let plan = RollPlan::of(&secrets, now);
                for s in secrets.iter().filter(|s| plan.stamp.contains(&s.id)) {
                    sqlx::query(STAMP_RETIRED)
                        .bind(s.life().retired_at(now).unwrap_or(now))
                        .bind(s.id)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(id) = plan.retire_now {
                    sqlx::query("update key_secrets set rolled_at = coalesce(rolled_at, $1), retired_at = $1 where id = $2")
                        .bind(now).bind(id).execute(&mut *tx).await?;
                }
                if let Some(c) = plan.demote.and_then(|id| secrets.iter().find(|s| s.id == id)) {
                    let (retires_at, quiet_ms, retired_at) = demoted_schedule(retire, c.quarantined_at.is_some(), now);
                    sqlx::query("update key_secrets set rolled_at = $1, retires_at = $2, quiet_ms = $3, retired_at = $4 where id = $5")
                        .bind(now).bind(retires_at).bind(quiet_ms).bind(retired_at).bind(c.id)
                        .execute(&mut *tx).await?;
                }
                sqlx::query(INSERT_SECRET)
                    .bind(key_id)
                    .bind(&token.hash().0)
                    .bind(token.display_prefix())
                    .bind(token.last_four())
                    .bind(now)
                    .bind(actor.person())
                    .execute(&mut *tx)
                    .await?;
                let ev = AuditEvent::new(account_id, actor, Action::KeyRolled)
                    .target(Target::key(key_id, &name))
                    .details(serde_json::json!({ "retire_previous": retire.describe() }));
                insert_audit!(&mut *tx, &ev);
            }
            let mut rolled = Vec::with_capacity(management.len());
            for (i, (id, token)) in management.iter().enumerate() {
                if let Some(row) = roll_management_key_in!(tx, account_id, id, token, actor) {
                    rolled.push((row, i));
                }
            }
            tx.commit().await?;
            Ok(rolled)
        })
    }

    /// Records that a secret was found retired (by time or quiet), so that it stays retired.
    pub async fn stamp_retired(&self, secret_id: i64, at: i64) -> Result<()> {
        on_write!(self, pool => {
            sqlx::query(STAMP_RETIRED).bind(at).bind(secret_id).execute(pool).await?;
        });
        Ok(())
    }

    /// A leak report for one token (its hash): a live secret is quarantined at once with
    /// the place it was found (`url`, already sanitised); re-reports keep the first report.
    pub async fn report_leak(
        &self,
        hash: &TokenHash,
        url: Option<&str>,
        now: i64,
    ) -> Result<LeakVerdict> {
        let sql = format!(
            "select s.{} from key_secrets s join api_keys k on k.id = s.key_id \
             where s.token_hash = $1 and k.status <> 'revoked'",
            SECRET_COLUMNS.replace(", ", ", s.")
        );
        let found: Option<SecretRow> = on_read!(self, pool => {
            sqlx::query_as(&sql).bind(&hash.0).fetch_optional(pool).await?
        });
        let Some(secret) = found else {
            return Ok(LeakVerdict::NotLive);
        };
        if secret.life().retired_at(now).is_some() {
            return Ok(LeakVerdict::NotLive);
        }
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let quarantined: Option<KeyId> = sqlx::query_scalar(
                "update key_secrets set quarantined_at = $1, quarantine_url = $2 \
                 where id = $3 and quarantined_at is null returning key_id",
            )
            .bind(now)
            .bind(url)
            .bind(secret.id)
            .fetch_optional(&mut *tx)
            .await?;
            // The first report only: the audit log tells the owner where it leaked.
            if let Some(key_id) = quarantined {
                let (account_id, name): (WorkspaceId, String) =
                    sqlx::query_as("select account_id, name from api_keys where id = $1")
                        .bind(key_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let ev = AuditEvent::new(account_id, &Actor::system(), Action::SecretQuarantined)
                    .target(Target::key(key_id, &name))
                    .details(serde_json::json!({ "url": url }));
                insert_audit!(&mut *tx, &ev);
            }
            tx.commit().await?;
        });
        Ok(LeakVerdict::Live)
    }

    /// The account's quarantined secrets that still need the owner (not retired yet).
    pub async fn leaked_secrets(&self, account_id: WorkspaceId) -> Result<Vec<LeakedSecret>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as(
                "select k.id as key_id, k.name, s.token_prefix, s.token_last4, s.quarantine_url, \
                 s.quarantined_at from key_secrets s join api_keys k on k.id = s.key_id \
                 where k.account_id = $1 and k.status <> 'revoked' and s.quarantined_at is not null \
                 and s.retired_at is null order by s.quarantined_at desc limit 20",
            )
            .bind(account_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Gives every key whose current secret has no `key_secrets` row one: keys created by a
    /// previous version during a rolling upgrade. Idempotent; safe from several processes.
    pub(crate) async fn backfill_key_secrets(&self) -> Result<()> {
        on_write!(self, pool => {
            sqlx::query(
                "insert into key_secrets (key_id, token_hash, token_prefix, token_last4, created_at, last_used_at) \
                 select k.id, k.token_hash, k.token_prefix, k.token_last4, k.created_at, k.last_used_at \
                 from api_keys k where not exists (select 1 from key_secrets s where s.token_hash = k.token_hash) \
                 on conflict (token_hash) do nothing",
            )
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

/// Stamps `retired_at` on a secret that has none.
const STAMP_RETIRED: &str =
    "update key_secrets set retired_at = $1 where id = $2 and retired_at is null";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_previous_secret_retires_after_its_last_use() {
        let life = Lifecycle {
            rolled_at: Some(1_000),
            retires_at: Some(100_000),
            quiet_ms: Some(500),
            retired_at: None,
            last_used_at: Some(2_000),
        };
        assert_eq!(life.retired_at(2_499), None);
        assert_eq!(life.retired_at(2_500), Some(2_500));
        let unused = Lifecycle {
            last_used_at: None,
            ..life.clone()
        };
        assert_eq!(unused.retired_at(1_499), None, "counted from the roll");
        assert_eq!(unused.retired_at(1_500), Some(1_500));
        let deadline = Lifecycle {
            quiet_ms: Some(1_000_000),
            ..life.clone()
        };
        assert_eq!(
            deadline.retired_at(100_000),
            Some(100_000),
            "the deadline holds"
        );
        assert_eq!(Lifecycle::default().retired_at(i64::MAX), None, "current");
    }
}
