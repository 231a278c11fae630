//! SQL for `webhook_endpoints` and the outbox, `webhook_deliveries`: endpoints, the
//! delivery log and "Send test event" here; the worker's lanes (lease an endpoint, claim
//! its rows, record attempts, the circuit breaker) in [`lanes`].

mod lanes;

use crate::domain::ids::WorkspaceId;
use sqlx::FromRow;

pub use lanes::{Attempt, DueDelivery, Lease};

use super::alerts::{insert_event, NewEvent};
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
    /// Failed attempts in a row (0 after a delivery).
    pub failures: i64,
    /// The circuit breaker: nothing is sent to it before this instant.
    pub paused_until: Option<i64>,
}

/// What "Send test event" came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestQueued {
    Queued,
    /// The endpoint already has its budget of test events waiting: nothing was queued.
    OverBudget,
}

/// Inserts one outbox row (endpoint, event, workspace, due at `$now`) on `$exec`, in an
/// enclosing `async` body whose `?` returns a `StoreError`: with its event's insert
/// (`store::alerts`, "Send test event"), in one transaction.
macro_rules! insert_delivery {
    ($exec:expr, $endpoint:expr, $event:expr, $ws:expr, $now:expr) => {
        sqlx::query(
            "insert into webhook_deliveries (endpoint_id, event_id, account_id, next_attempt_at, created_at) \
             values ($1, $2, $3, $4, $4)",
        )
        .bind($endpoint)
        .bind($event)
        .bind($ws)
        .bind($now)
        .execute($exec)
        .await?
    };
}
pub(crate) use insert_delivery;

/// A workspace's deletion (`store::accounts::workspaces`), on its transaction `$tx`: its
/// endpoints deleted and their pending deliveries dropped, so nothing more is sent for a
/// workspace that is gone (a delivery in flight records nothing: `record_attempt` updates
/// pending rows only). In an enclosing `async` body whose `?` returns a `StoreError`.
macro_rules! drop_workspace_webhooks {
    ($tx:ident, $ws:expr, $now:expr) => {{
        sqlx::query(
            "update webhook_endpoints set deleted_at = $2, claimed_until = null \
             where account_id = $1 and deleted_at is null",
        )
        .bind($ws)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "update webhook_deliveries set state = 'failed', last_error = 'workspace deleted' \
             where account_id = $1 and state = 'pending'",
        )
        .bind($ws)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use drop_workspace_webhooks;

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
                "select id, url, events, created_at, failures, paused_until from webhook_endpoints \
                 where account_id = $1 and deleted_at is null order by id",
            )
            .bind(account_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Deletes an endpoint (kept as a row for its log) and gives up its pending deliveries.
    /// One in flight meanwhile records nothing when it ends (`record_attempt` updates
    /// pending rows only), and the worker never claims a deleted endpoint's rows: nothing
    /// more is sent to it.
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
                "update webhook_endpoints set deleted_at = $1, claimed_until = null \
                 where id = $2 and account_id = $3 and deleted_at is null returning url, events",
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

    /// "Send test event": a `test` event (`e`) with one outbox row, for this endpoint only,
    /// unless `budget` test events already wait for it (pending: not yet delivered or given
    /// up), in one transaction. The endpoint's row is updated first, which locks it (and,
    /// on SQLite, the database), so two sends at once cannot both pass the count. That
    /// update also ends a circuit-breaker pause: the person has likely just fixed their
    /// receiver, and the next attempt is a single probe either way (`lanes`). `NotFound`
    /// for another workspace's or a deleted endpoint.
    pub async fn queue_test_event(
        &self,
        e: &NewEvent<'_>,
        endpoint: i64,
        budget: i64,
    ) -> Result<TestQueued> {
        let now = time_util::now_ms();
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query_scalar::<_, i64>(
                "update webhook_endpoints set paused_until = null \
                 where id = $1 and account_id = $2 and deleted_at is null returning id",
            )
            .bind(endpoint)
            .bind(e.account_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let waiting = sqlx::query_scalar::<_, i64>(
                "select count(*) from webhook_deliveries d join alert_events e on e.id = d.event_id \
                 where d.endpoint_id = $1 and d.state = 'pending' and e.kind = 'test'",
            )
            .bind(endpoint)
            .fetch_one(&mut *tx)
            .await?;
            if waiting >= budget {
                return Ok(TestQueued::OverBudget);
            }
            // A fresh random dedupe key: always new.
            let id = insert_event!(&mut *tx, e, now).ok_or(StoreError::Conflict)?;
            insert_delivery!(&mut *tx, endpoint, id, e.account_id, now);
            tx.commit().await?;
            Ok(TestQueued::Queued)
        })
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
