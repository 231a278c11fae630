//! SQL for `alert_settings`, `alert_events` (with the outbox rows they start) and
//! `key_networks`, and the reads the alert evaluator makes of keys and usage.

use crate::domain::ids::{KeyId, WorkspaceId};
use sqlx::FromRow;

use super::audit::{insert_audit, AuditEvent};
use super::webhooks::insert_delivery;
use super::{on_read, on_write, Result, Store};
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::time_util;

/// A workspace's alert settings (`alert_settings`; the defaults when it has no row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// Micro-credits in the last hour below which no spike is reported.
    pub spike_floor: i64,
    /// k: a spike is above k x the median hour of the past 14 days.
    pub spike_factor: i64,
    /// Alert when the balance falls below this many micro-credits.
    pub balance_below: Option<i64>,
    pub email_digest: bool,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            spike_floor: 1_000_000,
            spike_factor: 10,
            balance_below: None,
            email_digest: false,
        }
    }
}

#[derive(FromRow)]
struct SettingsRow {
    spike_floor: i64,
    spike_factor: i64,
    balance_below: Option<i64>,
    email_digest: i64,
}

/// An event as the notifications list shows it.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub public_id: String,
    pub key_id: Option<i64>,
    pub kind: String,
    pub payload: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// A new event: inserted once per (`account_id`, `dedupe`).
pub struct NewEvent<'a> {
    pub public_id: &'a str,
    pub account_id: WorkspaceId,
    pub key_id: Option<KeyId>,
    pub kind: &'a str,
    pub dedupe: &'a str,
    pub payload: &'a str,
}

/// Inserts a [`NewEvent`] on `$exec` unless its (account, dedupe) exists, in an enclosing
/// `async` body whose `?` returns a `StoreError`: the new row's id, or None. Here and in
/// "Send test event" (`store::webhooks`), each with its outbox rows in one transaction.
macro_rules! insert_event {
    ($exec:expr, $e:expr, $now:expr) => {{
        let e: &$crate::store::alerts::NewEvent<'_> = $e;
        sqlx::query_scalar::<_, i64>(
            "insert into alert_events (public_id, account_id, key_id, kind, dedupe, payload, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7) on conflict (account_id, dedupe) do nothing returning id",
        )
        .bind(e.public_id)
        .bind(e.account_id)
        .bind(e.key_id)
        .bind(e.kind)
        .bind(e.dedupe)
        .bind(e.payload)
        .bind($now)
        .fetch_optional($exec)
        .await?
    }};
}
pub(crate) use insert_event;

impl Store {
    pub async fn alert_settings(&self, account_id: WorkspaceId) -> Result<AlertSettings> {
        let row = on_read!(self, pool => {
            sqlx::query_as::<_, SettingsRow>(
                "select spike_floor, spike_factor, balance_below, email_digest \
                 from alert_settings where account_id = $1",
            )
            .bind(account_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map_or_else(AlertSettings::default, |r| AlertSettings {
            spike_floor: r.spike_floor,
            spike_factor: r.spike_factor,
            balance_below: r.balance_below,
            email_digest: r.email_digest != 0,
        }))
    }

    /// Saves the workspace's alert settings, with their audit event.
    pub async fn save_alert_settings(
        &self,
        account_id: WorkspaceId,
        s: &AlertSettings,
        actor: &Actor,
    ) -> Result<()> {
        let ev = AuditEvent::new(account_id, actor, Action::SettingsChanged).details(
            serde_json::json!({"alerts": {
                "spike_floor": s.spike_floor, "spike_factor": s.spike_factor,
                "balance_below": s.balance_below, "email_digest": s.email_digest,
            }}),
        );
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "insert into alert_settings (account_id, spike_floor, spike_factor, balance_below, email_digest) \
                 values ($1, $2, $3, $4, $5) on conflict (account_id) do update set \
                 spike_floor = excluded.spike_floor, spike_factor = excluded.spike_factor, \
                 balance_below = excluded.balance_below, email_digest = excluded.email_digest",
            )
            .bind(account_id)
            .bind(s.spike_floor)
            .bind(s.spike_factor)
            .bind(s.balance_below)
            .bind(i64::from(s.email_digest))
            .execute(&mut *tx)
            .await?;
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records `e` unless an event with its dedupe key exists, with one outbox row per
    /// endpoint that takes it, in one transaction. The new event's row id, or None.
    pub async fn insert_alert_event(&self, e: &NewEvent<'_>) -> Result<Option<i64>> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let Some(id) = insert_event!(&mut *tx, e, now) else { return Ok(None) };
            let endpoints = sqlx::query_as::<_, (i64, String)>(
                "select id, events from webhook_endpoints where account_id = $1 and deleted_at is null",
            )
            .bind(e.account_id)
            .fetch_all(&mut *tx)
            .await?;
            for (endpoint, events) in endpoints {
                if events.split(',').any(|k| k == e.kind) {
                    insert_delivery!(&mut *tx, endpoint, id, e.account_id, now);
                }
            }
            tx.commit().await?;
            Ok(Some(id))
        })
    }

    /// The newest events of a workspace, newest first.
    pub async fn alert_events(&self, account_id: WorkspaceId, limit: i64) -> Result<Vec<EventRow>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, EventRow>(
                "select id, public_id, key_id, kind, payload, created_at, read_at from alert_events \
                 where account_id = $1 order by id desc limit $2",
            )
            .bind(account_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Events not yet marked read (the layout's count), counted up to 100.
    pub async fn unread_alerts(&self, account_id: WorkspaceId) -> Result<i64> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from (select 1 from alert_events where account_id = $1 \
                 and read_at is null limit 100) as u",
            )
            .bind(account_id)
            .fetch_one(pool)
            .await?
        }))
    }

    pub async fn mark_alerts_read(&self, account_id: WorkspaceId) -> Result<()> {
        on_write!(self, pool => {
            sqlx::query("update alert_events set read_at = $1 where account_id = $2 and read_at is null")
                .bind(time_util::now_ms())
                .bind(account_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Micro-credits a key was charged on UTC days `from_day..=to_day` (the rollup).
    pub async fn key_spend_days(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        from_day: i64,
        to_day: i64,
    ) -> Result<i64> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "select cast(coalesce(sum(cost), 0) as bigint) from usage_daily_keys \
                 where account_id = $1 and day >= $2 and day <= $3 and key_id = $4",
            )
            .bind(account_id)
            .bind(from_day)
            .bind(to_day)
            .bind(key_id)
            .fetch_one(pool)
            .await?
        }))
    }

    /// A key's charges per UTC hour (unix hour number) for hours `from..to`
    /// (`usage_hourly_keys`: at most one row per hour).
    pub async fn key_hourly_spend(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64)>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, (i64, i64)>(
                "select hour, cost from usage_hourly_keys \
                 where account_id = $1 and hour >= $2 and hour < $3 and key_id = $4",
            )
            .bind(account_id)
            .bind(from)
            .bind(to)
            .bind(key_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Adds `(account, key, hour, cost)` charges to `usage_hourly_keys`, in one transaction.
    pub async fn add_hourly_spend(&self, rows: &[(WorkspaceId, KeyId, i64, i64)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            for (account_id, key_id, hour, cost) in rows {
                sqlx::query(
                    "insert into usage_hourly_keys (account_id, key_id, hour, cost) values ($1, $2, $3, $4) \
                     on conflict (key_id, hour) do update set cost = usage_hourly_keys.cost + excluded.cost",
                )
                .bind(account_id)
                .bind(key_id)
                .bind(hour)
                .bind(cost)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether the key served `model` on a day before `day` (a first use is not).
    pub async fn model_used_before(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        model: &str,
        day: i64,
    ) -> Result<bool> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from (select 1 from usage_daily where account_id = $1 and day < $2 \
                 and key_id = $3 and model = $4 limit 1) as u",
            )
            .bind(account_id)
            .bind(day)
            .bind(key_id)
            .bind(model)
            .fetch_one(pool)
            .await? > 0
        }))
    }

    /// Notes that `key_id` was used from `network`: true when that is new and the key had
    /// been used from another network before (its first network is no alert).
    pub async fn note_key_network(&self, key_id: KeyId, network: &str) -> Result<bool> {
        on_write!(self, pool => {
            let inserted = sqlx::query(
                "insert into key_networks (key_id, network, first_seen_at) values ($1, $2, $3) \
                 on conflict (key_id, network) do nothing",
            )
            .bind(key_id)
            .bind(network)
            .bind(time_util::now_ms())
            .execute(pool)
            .await?
            .rows_affected()
                == 1;
            if !inserted {
                return Ok(false);
            }
            let others = sqlx::query_scalar::<_, i64>(
                "select count(*) from key_networks where key_id = $1 and network <> $2",
            )
            .bind(key_id)
            .bind(network)
            .fetch_one(pool)
            .await?;
            Ok(others > 0)
        })
    }

    /// Per-key setting: disable the key when a spike is found.
    pub async fn key_auto_disable(&self, account_id: WorkspaceId, key_id: KeyId) -> Result<bool> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, i64>(
                "select auto_disable_on_spike from api_keys where id = $1 and account_id = $2",
            )
            .bind(key_id)
            .bind(account_id)
            .fetch_optional(pool)
            .await?
        })
        .unwrap_or(0)
            != 0)
    }

    /// Keys of a workspace with auto-disable on.
    pub async fn auto_disable_keys(&self, account_id: WorkspaceId) -> Result<Vec<KeyId>> {
        Ok(on_read!(self, pool => {
            sqlx::query_scalar::<_, KeyId>(
                "select id from api_keys where account_id = $1 and auto_disable_on_spike = 1",
            )
            .bind(account_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Turns a key's auto-disable on a spend spike on or off, with its audit event.
    pub async fn set_key_auto_disable(
        &self,
        account_id: WorkspaceId,
        key_id: KeyId,
        on: bool,
        actor: &Actor,
    ) -> Result<()> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let name: String = sqlx::query_scalar(
                "update api_keys set auto_disable_on_spike = $1 where id = $2 and account_id = $3 \
                 and status <> 'revoked' returning name",
            )
            .bind(i64::from(on))
            .bind(key_id)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(super::StoreError::NotFound)?;
            let ev = AuditEvent::new(account_id, actor, Action::SettingsChanged)
                .target(Target::key(key_id, &name))
                .details(serde_json::json!({"auto_disable_on_spike": on}));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Keys expiring within `[now, until)` that are live: (account, key).
    pub async fn keys_expiring(
        &self,
        now: i64,
        until: i64,
    ) -> Result<Vec<(WorkspaceId, KeyId, i64)>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, (WorkspaceId, KeyId, i64)>(
                "select account_id, id, expires_at from api_keys where status = 'active' \
                 and expires_at >= $1 and expires_at < $2",
            )
            .bind(now)
            .bind(until)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Live keys whose current secret was made before `before`: (account, key, made at).
    pub async fn keys_rotation_due(&self, before: i64) -> Result<Vec<(WorkspaceId, KeyId, i64)>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, (WorkspaceId, KeyId, i64)>(
                "select k.account_id, k.id, s.created_at from api_keys k join key_secrets s \
                 on s.key_id = k.id and s.rolled_at is null and s.retired_at is null \
                 where k.status = 'active' and s.created_at < $1",
            )
            .bind(before)
            .fetch_all(pool)
            .await?
        }))
    }
}

impl Store {
    /// Workspaces owed a digest: mail on, none in the last hour, and events not yet mailed.
    /// (account, email)
    pub async fn digests_due(&self, now: i64) -> Result<Vec<(WorkspaceId, String)>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, (WorkspaceId, String)>(
                "select s.account_id, a.email from alert_settings s join accounts a on a.id = s.account_id \
                 where s.email_digest = 1 and (s.last_digest_at is null or s.last_digest_at <= $1) \
                 and exists (select 1 from alert_events e where e.account_id = s.account_id \
                 and e.emailed_at is null and e.kind <> 'test')",
            )
            .bind(now - 3_600_000)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Takes a workspace's digest: its events not yet mailed (at most 200, oldest first),
    /// marked mailed with the digest's time in one transaction; None if another process
    /// took it first (the `last_digest_at` condition).
    pub async fn take_digest(
        &self,
        account_id: WorkspaceId,
        now: i64,
    ) -> Result<Option<Vec<EventRow>>> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let took = sqlx::query(
                "update alert_settings set last_digest_at = $1 where account_id = $2 \
                 and (last_digest_at is null or last_digest_at <= $3)",
            )
            .bind(now)
            .bind(account_id)
            .bind(now - 3_600_000)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if took != 1 {
                return Ok(None);
            }
            let events = sqlx::query_as::<_, EventRow>(
                "select id, public_id, key_id, kind, payload, created_at, read_at from alert_events \
                 where account_id = $1 and emailed_at is null and kind <> 'test' order by id limit 200",
            )
            .bind(account_id)
            .fetch_all(&mut *tx)
            .await?;
            if let Some(last) = events.last() {
                sqlx::query(
                    "update alert_events set emailed_at = $1 where account_id = $2 \
                     and emailed_at is null and kind <> 'test' and id <= $3",
                )
                .bind(now)
                .bind(account_id)
                .bind(last.id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Some(events))
        })
    }
}

impl Store {
    /// The workspace and key of a secret, by its hash (a leak report's alert).
    pub async fn key_of_secret(&self, token_hash: &str) -> Result<Option<(WorkspaceId, KeyId)>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, (WorkspaceId, KeyId)>(
                "select k.account_id, k.id from key_secrets s join api_keys k on k.id = s.key_id \
                 where s.token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        }))
    }
}
