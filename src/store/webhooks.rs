//! SQL for `webhook_endpoints` and the outbox, `webhook_deliveries`.

use crate::domain::ids::WorkspaceId;
use sqlx::FromRow;

use super::audit::{insert_audit, AuditEvent};
use super::{on_read, on_write, Result, Store, StoreError};
use crate::domain::audit::{Action, Actor};
use crate::domain::time_util;

#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: i64,
    pub url: String,
    pub events: String,
    pub created_at: i64,
}

/// One delivery as the log shows it.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub endpoint_id: i64,
    pub event_public_id: String,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_latency_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// A delivery claimed by a worker, with what it needs to send it.
#[derive(Debug, Clone, FromRow)]
pub struct DueDelivery {
    pub id: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub url: String,
    pub secret: String,
    pub payload: String,
}

/// What one attempt came to.
pub struct Attempt<'a> {
    pub delivered: bool,
    /// Given up: no more attempts.
    pub failed_for_good: bool,
    pub next_attempt_at: i64,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<&'a str>,
}

impl Store {
    /// Adds an endpoint, with its audit event (which names the URL's host only: a webhook
    /// URL's path or query often is itself a secret).
    pub async fn create_endpoint(
        &self,
        account_id: WorkspaceId,
        url: &str,
        secret: &str,
        events: &str,
        actor: &Actor,
    ) -> Result<i64> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let id = sqlx::query_scalar::<_, i64>(
                "insert into webhook_endpoints (account_id, url, secret, events, created_at) \
                 values ($1, $2, $3, $4, $5) returning id",
            )
            .bind(account_id)
            .bind(url)
            .bind(secret)
            .bind(events)
            .bind(time_util::now_ms())
            .fetch_one(&mut *tx)
            .await?;
            let ev = AuditEvent::new(account_id, actor, Action::SettingsChanged)
                .details(endpoint_details("added", id, url, events));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Gives a live endpoint a new signing secret (the old one stops signing at once: the
    /// next delivery, retries included, is signed with the new one), with its audit event.
    /// `NotFound` for another workspace's or a deleted endpoint.
    pub async fn roll_endpoint_secret(
        &self,
        account_id: WorkspaceId,
        id: i64,
        secret: &str,
        actor: &Actor,
    ) -> Result<String> {
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let (url, events): (String, String) = sqlx::query_as(
                "update webhook_endpoints set secret = $1 \
                 where id = $2 and account_id = $3 and deleted_at is null returning url, events",
            )
            .bind(secret)
            .bind(id)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let ev = AuditEvent::new(account_id, actor, Action::SettingsChanged)
                .details(endpoint_details("secret rolled", id, &url, &events));
            insert_audit!(&mut *tx, &ev);
            tx.commit().await?;
            Ok(url)
        })
    }

    pub async fn endpoints(&self, account_id: WorkspaceId) -> Result<Vec<EndpointRow>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, EndpointRow>(
                "select id, url, events, created_at from webhook_endpoints \
                 where account_id = $1 and deleted_at is null order by id",
            )
            .bind(account_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Deletes an endpoint (kept as a row for its log) and gives up its pending deliveries.
    pub async fn delete_endpoint(
        &self,
        account_id: WorkspaceId,
        id: i64,
        actor: &Actor,
    ) -> Result<()> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            let (url, events): (String, String) = sqlx::query_as(
                "update webhook_endpoints set deleted_at = $1 where id = $2 and account_id = $3 \
                 and deleted_at is null returning url, events",
            )
            .bind(now)
            .bind(id)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let ev = AuditEvent::new(account_id, actor, Action::SettingsChanged)
                .details(endpoint_details("deleted", id, &url, &events));
            insert_audit!(&mut *tx, &ev);
            sqlx::query("update webhook_deliveries set state = 'failed', last_error = 'endpoint deleted' \
                         where endpoint_id = $1 and state = 'pending'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The newest deliveries of a workspace's endpoints.
    pub async fn deliveries(
        &self,
        account_id: WorkspaceId,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>> {
        Ok(on_read!(self, pool => {
            sqlx::query_as::<_, DeliveryRow>(
                "select d.id, d.endpoint_id, e.public_id as event_public_id, e.kind, d.state, \
                 d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status, \
                 d.last_latency_ms, d.last_error from webhook_deliveries d \
                 join alert_events e on e.id = d.event_id \
                 where d.account_id = $1 order by d.id desc limit $2",
            )
            .bind(account_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Claims up to `limit` due deliveries until `claim_until` (a worker that dies with
    /// them leaves them due again then): each is taken by one conditional update, so two
    /// processes never both claim a row.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        claim_until: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>> {
        let due = on_read!(self, pool => {
            sqlx::query_as::<_, DueDelivery>(
                "select d.id, d.attempts, d.next_attempt_at, d.created_at, w.url, w.secret, e.payload \
                 from webhook_deliveries d join webhook_endpoints w on w.id = d.endpoint_id \
                 join alert_events e on e.id = d.event_id \
                 where d.state = 'pending' and d.next_attempt_at <= $1 \
                 order by d.next_attempt_at limit $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut claimed = Vec::with_capacity(due.len());
        for d in due {
            let took = on_write!(self, pool => {
                sqlx::query(
                    "update webhook_deliveries set next_attempt_at = $1 where id = $2 \
                     and state = 'pending' and next_attempt_at = $3",
                )
                .bind(claim_until)
                .bind(d.id)
                .bind(d.next_attempt_at)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if took == 1 {
                claimed.push(d);
            }
        }
        Ok(claimed)
    }

    pub async fn record_attempt(&self, id: i64, a: &Attempt<'_>) -> Result<()> {
        let state = if a.delivered {
            "delivered"
        } else if a.failed_for_good {
            "failed"
        } else {
            "pending"
        };
        on_write!(self, pool => {
            sqlx::query(
                "update webhook_deliveries set state = $1, attempts = attempts + 1, \
                 next_attempt_at = $2, last_attempt_at = $3, last_status = $4, \
                 last_latency_ms = $5, last_error = $6 where id = $7",
            )
            .bind(state)
            .bind(a.next_attempt_at)
            .bind(time_util::now_ms())
            .bind(a.status)
            .bind(a.latency_ms)
            .bind(a.error)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

/// An endpoint change as an audit event's details: its id, its URL's host and its events.
fn endpoint_details(change: &str, id: i64, url: &str, events: &str) -> serde_json::Value {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    serde_json::json!({"webhook": {"change": change, "id": id, "host": host, "events": events}})
}
